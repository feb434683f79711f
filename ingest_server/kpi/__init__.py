"""KPIs from measured data: pure functions over typed records (docs/kpi.md)."""
