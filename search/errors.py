"""Errors raised by the search engine.

SearchError
├── InvalidSpaceError        a search-space spec that cannot be searched
├── InvalidParamsError       a configuration that does not belong to its space
├── InvalidObservationError  a loss or cost that cannot be learned from (NaN, inf, <= 0 cost)
├── UnknownSuggestionError   tell/forget of an id the engine never issued (or already closed)
├── HistoryMismatchError     a history that does not start with what the engine took in
├── NotEnoughDataError       a fit asked of too few or too narrow observations
└── ModelFittingError        a surrogate fit that failed after its bounded retries
"""

from __future__ import annotations


class SearchError(Exception):
    """Base class of every error the search package raises on purpose."""


class InvalidSpaceError(SearchError, ValueError):
    """A search-space spec is inconsistent (bounds, centers, names, choices)."""


class InvalidParamsError(SearchError, ValueError):
    """A configuration has unknown or missing names, wrong types or out-of-bounds values."""


class InvalidObservationError(SearchError, ValueError):
    """A told loss or cost is not finite, or a cost is not positive."""


class UnknownSuggestionError(SearchError, KeyError):
    """tell() or forget() named a suggestion id that is not pending."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else ""


class HistoryMismatchError(SearchError, ValueError):
    """A history handed to a rebuilt engine lost, reordered or changed observations it
    had already taken in (``ParetoSearch.from_state_dict(state, history=...)``)."""


class NotEnoughDataError(SearchError, ValueError):
    """A model or scaling fit was asked of data that cannot support it."""


class ModelFittingError(SearchError, RuntimeError):
    """A surrogate model could not be fitted after the allowed retries."""
