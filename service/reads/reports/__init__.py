"""File reports a user checks into their repository (Markdown + PNG); no database."""

from service.reads.reports.scaling import write_scaling_report

__all__ = ["write_scaling_report"]
