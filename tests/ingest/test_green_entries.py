"""`ingest-server green set | show` (cli/green.py, repo/green.py): the period's green-factory
and GHG entries from a YAML file, stored with who entered them and when; a second `set`
is in force and the first stays on the trail; a file with mistakes is refused whole,
each problem naming its field and how to fix it, and nothing is stored.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import psycopg
import pytest

from ingest_server.repo import green
from ingest_server.repo.registry import import_registry, load_registry
from simulators.scenario import default_scenario_path
from tests.evidence.test_ledger import run

DEMO = default_scenario_path().with_name("demo-registry.yaml")
ENT = "hf-precision"
PERIOD = ("--enterprise", ENT, "--from", "2026-11-01", "--to", "2026-11-30")
GOOD = """\
indicators:
- id: energy_per_unit
  baseline: 0.5
  leading: 0.3
  reference: 行业绿色工厂评价要求 表A.1
- id: solid_waste_reuse
  group: resource_efficiency
  name: 一般工业固废综合利用率
  name_en: Industrial solid waste reused
  unit: "%"
  direction: higher
  value: 92.5
  evidence: 固废台账 2026-11
  baseline: 80
  leading: 95
pv:
  generation_kwh: 12000
  exported_kwh: 2000
  evidence: 逆变器月报 2026-11
process_emissions:
- source: CO2 焊接保护气
  activity: 1.2
  unit: t
  factor: 1.0
  factor_source: 购入量即排放量 (企业台账)
  evidence: 采购台账 2026-11
"""


@pytest.fixture
def plant(db: str) -> str:
    with psycopg.connect(db) as conn:
        import_registry(conn, load_registry(DEMO), {"gw-01": b"k" * 32})
    return db


def entries_file(tmp_path: Path, text: str, name: str = "green.yaml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_set_stores_who_entered_what_and_show_gives_the_one_in_force(
    plant: str, tmp_path: Path
) -> None:
    code, out = run("green", "set", *PERIOD, "--file", entries_file(tmp_path, GOOD),
                    "--by", "张工", "--note", "首次填报", "--dsn", plant)  # fmt: skip
    assert code == 0, out
    assert "2 indicator(s), PV, 1 process emission(s), by 张工" in out
    second = GOOD.replace("baseline: 0.5", "baseline: 0.55")
    code, out = run("green", "set", *PERIOD, "--file", entries_file(tmp_path, second),
                    "--by", "李工", "--dsn", plant)  # fmt: skip
    assert code == 0, out
    code, shown = run("green", "show", *PERIOD, "--json", "--dsn", plant)
    assert code == 0, shown
    (row,) = shown
    assert row["entered_by"] == "李工"
    assert row["entries"]["indicators"][0]["baseline"] == 0.55
    assert row["process"][0]["source"] == "CO2 焊接保护气"
    code, trail = run("green", "show", *PERIOD, "--history", "--json", "--dsn", plant)
    assert [(r["entered_by"], r["note"]) for r in trail] == [("张工", "首次填报"), ("李工", "")]
    code, text = run("green", "show", *PERIOD, "--dsn", plant)
    assert "by 李工" in text
    assert "solid_waste_reuse" in text
    assert "CO2 焊接保护气: 1.2 t x 1 tCO2/t" in text
    # another period has none: a month's entries never stand in for another period's
    with psycopg.connect(plant) as conn:
        assert green.current_entries(conn, enterprise=ENT, date_from=dt.date(2026, 11, 1),
                                     date_to=dt.date(2026, 11, 29)) is None  # fmt: skip


@pytest.mark.parametrize(
    ("edit", "said"),
    [
        (("  baseline: 0.5\n", "  baseline: 0.5\n  basline: 1\n"),
         "indicators[0].basline: unknown field; check its spelling"),
        (("  leading: 0.3\n", "  leading: 0.7\n"),
         "indicator energy_per_unit: the leading value 0.7 is worse than the baseline value "
         "0.5 for an indicator where lower is better: swap them"),
        (("  activity: 1.2\n", "  activity: -1.2\n"),
         "process_emissions[0].activity: Input should be greater than or equal to 0"),
        (("  group: resource_efficiency\n", ""), "indicator solid_waste_reuse: no meter "
         "measures it, so enter its group"),
        (("- id: energy_per_unit\n", "- id: energy_per_unit\n  value: 0.4\n"),
         "indicator energy_per_unit is measured: enter only its baseline, leading value and "
         "reference, not its value"),
        (("  factor_source: 购入量即排放量 (企业台账)\n", "  gas: SF6\n  factor_source: x\n"),
         "SF6 needs its GWP and the GWP's source"),
        (("process_emissions:", "process_emission:"), "process_emission: unknown field"),
    ],
)  # fmt: skip
def test_a_bad_file_names_the_field_and_stores_nothing(
    plant: str, tmp_path: Path, edit: tuple[str, str], said: str
) -> None:
    old, new = edit
    assert old in GOOD
    bad = entries_file(tmp_path, GOOD.replace(old, new, 1))
    code, out = run("green", "set", *PERIOD, "--file", bad, "--by", "张工", "--dsn", plant)
    assert code == 2
    assert said in out, out
    with psycopg.connect(plant) as conn:
        assert green.entry_trail(conn, enterprise=ENT) == []


def test_an_unknown_enterprise_and_a_missing_name_are_refused(plant: str, tmp_path: Path) -> None:
    good = entries_file(tmp_path, GOOD)
    other = ("--enterprise", "nobody", *PERIOD[2:])
    code, out = run("green", "set", *other, "--file", good, "--by", "张工", "--dsn", plant)
    assert code == 2
    assert "no enterprise 'nobody': import the registry first" in out
    code, out = run("green", "set", *PERIOD, "--file", good, "--by", " ", "--dsn", plant)
    assert code == 2
    assert "--by: say who enters the values" in out
