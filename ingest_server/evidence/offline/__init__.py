"""The offline verifier's checks of an evidence bundle (issue 17, docs/evidence-verify.md):
one zip and the verifier's own trust file, no database, no network.

    bundle.zip + trust.json
      --manifest----> every member present, its SHA-256, bytes and rows as listed; nothing
                      unlisted; the manifest's report hash and signature are report.json's
      --report------> report.json signed over RFC 8785 by a report key of the TRUST file
      --batches-----> every v2 batch: positions, digest recomputed from the bundled samples,
                      signature by the gateway key the trust file says was enrolled when
                      the batch arrived (evidence/ledger.py's check_batch); orphan samples
      --chain-------> each gateway's chain (evidence/ledger.py's check_chain): every gap
                      with its duration and the devices and equipment it touches
      --anchors-----> each day's root rebuilt from its leaves; tokens under a trusted TSA;
                      every period batch a leaf of its day; unanchored days listed
      --kpis--------> every KPI recomputed from the bundle's samples, registry (rolled
                      back by its edit trail), entries and factors, claimed vs recomputed
                      (kpis.py); the trail, entries and factors checked; the report's
                      targets, meter_register, green and ghg blocks against its own
                      figures (the server's checks) and against the recomputed figures
                      and rolled-back registry (kpi_blocks.py)
      --> Verdict: each check ok / failed / not_checked with bilingual reasons;
          pass only when every check is ok, fail when one failed, else incomplete

Pure: it reads the zip with zipfile and pyarrow and trusts nothing the bundle ships (its
gateway_keys.json is a copy for reading; the keys come from the trust file). The batch
checks reuse the ledger check's own functions over the bundle's rows, so `ledger check`
on the server and this check cannot disagree on what a finding is.

Fast (docs/evidence-verify.md, "Speed"): the ledger is held as columns (`_Ledger`), the
links, days and leaves checked column-wise, and a `ledger.Batch` made only for a batch a
finding is about; the digests column-wise (batch_columns.prepare_columns); the
signatures by libsodium on worker threads from the start of `batches` to the end of
`kpis` (`_Signatures`; what libsodium refuses is checked again with cryptography).

The modules, one a concept; they import one another, never this package, which only
names the API:

    check.py             check_bundle: the checks above in order, the verdict
    verdict.py           Verdict, Check, Reason, BundleInputError; a check run guarded
    members.py           the zip opened, its members read lazily, Parquet where it lies
    trust.py             the trust file read (load_trust_file)
    manifest.py, report_signature.py, batches.py, chain.py, anchors.py   the checks
    ledger_columns.py    the ledger as columns, shared by batches, chain and anchors
    digests.py           every batch's digest recomputed column-wise (for batches)
    signatures.py        the batch signatures by libsodium on worker threads
    kpis.py              the kpis check; kpi_inputs.py (with kpi_samples.py) rebuilds
                         the KPI inputs, kpi_trail.py the registry as the report read it,
                         kpi_entries.py and kpi_factors.py the declared side,
                         kpi_blocks.py the report's blocks after its figures,
                         kpi_check.py what they share
"""

from ingest_server.evidence.offline.check import check_bundle
from ingest_server.evidence.offline.trust import load_trust_file
from ingest_server.evidence.offline.verdict import BundleInputError, Check, Reason, Verdict

__all__ = ["BundleInputError", "Check", "Reason", "Verdict", "check_bundle", "load_trust_file"]
