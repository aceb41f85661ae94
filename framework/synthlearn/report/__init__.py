"""The run's report: report.md and its PNG figures."""
