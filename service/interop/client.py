"""A small Python client of the scaletune HTTP API (httpx), mirroring its routes.

client = ScaletuneClient("http://127.0.0.1:8000", token=os.environ["SCALETUNE_TOKEN"])
study = client.create_study(spec)              # dict (StudyDetail)
for item in client.ask(study["id"], count=2)["data"]:
    client.tell(item["trial_id"], loss=..., cost=...)
"""

from __future__ import annotations

from typing import Any

import httpx


class ApiError(RuntimeError):
    """The API refused a request; ``status`` and the server's ``detail`` say why."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


class ScaletuneClient:
    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        token: str | None = None,
        timeout_s: float = 30.0,
        http: httpx.Client | None = None,
    ) -> None:
        """``token``: the API token sent as ``Authorization: Bearer`` on every request
        (None: whatever headers ``http`` already sends)."""
        self.http = http or httpx.Client(base_url=base_url, timeout=timeout_s)
        self._headers = {} if token is None else {"Authorization": f"Bearer {token}"}

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, headers=self._headers, **kwargs)
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text
            raise ApiError(response.status_code, detail)
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    def create_study(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/studies", json=spec)

    def import_study(self, body: dict[str, Any]) -> dict[str, Any]:
        """Past runs as a finished study (``service.interop.imports.StudyImport``)."""
        return self._call("POST", "/studies/import", json=body)

    def list_studies(self, *, offset: int = 0, limit: int = 50) -> dict[str, Any]:
        return self._call("GET", "/studies", params={"offset": offset, "limit": limit})

    def get_study(self, study_id: int) -> dict[str, Any]:
        return self._call("GET", f"/studies/{study_id}")

    def set_state(self, study_id: int, action: str) -> dict[str, Any]:
        """``action`` is pause, resume or stop."""
        return self._call("POST", f"/studies/{study_id}/{action}")

    def list_trials(
        self, study_id: int, *, states: list[str] | None = None, offset: int = 0, limit: int = 100
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"offset": offset, "limit": limit}
        if states:
            params["state"] = states
        return self._call("GET", f"/studies/{study_id}/trials", params=params)

    def get_trial(self, trial_id: int) -> dict[str, Any]:
        return self._call("GET", f"/trials/{trial_id}")

    def ask(self, study_id: int, *, count: int = 1) -> dict[str, Any]:
        return self._call("POST", f"/studies/{study_id}/ask", json={"count": count})

    def tell(
        self,
        trial_id: int,
        *,
        loss: float | None,
        cost: float,
        failed: bool = False,
        metrics: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        body = {"loss": loss, "cost": cost, "failed": failed, "metrics": metrics or {}}
        return self._call("POST", f"/trials/{trial_id}/tell", json=body)

    def heartbeat(self, trial_id: int) -> dict[str, Any]:
        return self._call("POST", f"/trials/{trial_id}/heartbeat")

    def verify(self, study_id: int, *, scale_factor: float = 10.0) -> dict[str, Any]:
        """Add the verification trial at ``scale_factor`` x the largest observed compute."""
        body = {"scale_factor": scale_factor}
        return self._call("POST", f"/studies/{study_id}/verify", json=body)

    def verification(self, study_id: int) -> dict[str, Any]:
        """The latest verification trial: state, params, predicted vs observed loss."""
        return self._call("GET", f"/studies/{study_id}/verification")

    def queues(self) -> dict[str, Any]:
        return self._call("GET", "/queues")

    def front(self, study_id: int) -> dict[str, Any]:
        return self._call("GET", f"/studies/{study_id}/front")

    def rules(self, study_id: int, *, fmt: str = "json") -> Any:
        return self._call("GET", f"/studies/{study_id}/rules" + (".yaml" if fmt == "yaml" else ""))

    def report_file(self, study_id: int, name: str = "scaling-report.md") -> bytes:
        """A file of the study's scaling report: the Markdown or one of its PNG plots."""
        response = self.http.get(f"/studies/{study_id}/report/{name}", headers=self._headers)
        if response.status_code >= 400:
            raise ApiError(response.status_code, response.json().get("detail"))
        return response.content
