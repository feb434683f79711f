"""The API's routes, one router per resource (each module's `router`, included by
api/app.py), all under /api/v1:

    module              path                                     what
    auth.py       POST  /login                                   {name, password} -> a session token
                  POST  /logout                                  revoke the token of the request
    registry.py   GET   /enterprises                             the caller's enterprises
                  GET   /enterprises/{e}                         sites, processes
                  GET   /enterprises/{e}/equipment               declared attributes + live state
                  PATCH /enterprises/{e}/equipment/{id}          edit declared attributes (audited)
                  GET   /enterprises/{e}/equipment/{id}/audit    who changed what, when
    series.py     GET   /enterprises/{e}/equipment/{id}/timeline state intervals (Gantt)
                  GET   /enterprises/{e}/equipment/{id}/counters its tags; parts, kWh per hour/day
                  GET   /enterprises/{e}/series                  one tag, downsampled
                  GET   /enterprises/{e}/energy                  consumption per meter per hour/day
    gateways.py   GET   /enterprises/{e}/gateways                status, boot, agent
                  GET   /enterprises/{e}/dead-letters            refused messages of its gateways
    kpis.py       GET   /enterprises/{e}/kpis                    every KPI of a period (unsigned)
                  GET   /enterprises/{e}/trend                   KPIs per day / week / month
                  GET   /factors                                 coefficient and factor tables
    reports.py    GET   /enterprises/{e}/report                  a signed evidence report
                  POST  /enterprises/{e}/reports                 issue, sign and keep a report
                  GET   /enterprises/{e}/reports                 the issued reports
                  GET   /reports/{report_id}                     one, as issued (json|html|xlsx)
                  GET   /reports/{report_id}/bundle              its evidence bundle (zip)
                  POST  /reports/{report_id}/verify              claimed vs recomputed
                  POST  /reports/verify                          a posted report file, verified
                  GET   /keys                                    the public signing keys
    production.py GET   /enterprises/{e}/production              output / value added entries
                  POST  /enterprises/{e}/production              enter one
    downtime.py   GET   /enterprises/{e}/downtime-reasons        the reason catalogue
                  GET   /enterprises/{e}/equipment/{id}/stops    DOWN/IDLE intervals + reasons
                  PUT   /enterprises/{e}/equipment/{id}/stops/reason  attach/change/clear
                                                                 a reason (audited)
                  GET   /enterprises/{e}/downtime-audit          who attached what, when
                  GET   /enterprises/{e}/losses                  loss Pareto, MTBF/MTTR by cause
                  GET   /enterprises/{e}/equipment/{id}/alarms   alarm texts of a window
    green.py      GET   /enterprises/{e}/green                   green entries, trail, sheet, GHG
                  PUT   /enterprises/{e}/green                   enter a period's values (a new row)
    declared.py   GET   /enterprises/{e}/meter-register          meters, certificates' state
                  GET   /enterprises/{e}/declaration             the report's declaration (承诺)

The signed report takes `from`, `to` (dates), optionally `baseline_from` and
`baseline_to`, `coverage_threshold` (0.8), `heartbeat_s` and `format` (json|html|xlsx);
data views take a window `start`, `end` (times with their zone: api/params.py).

Reads of an enterprise need it among the caller's (admin: all); writes need an enterprise
or admin account (api/auth.py, api/deps.py).
"""
