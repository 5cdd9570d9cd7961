"""Clients for models served by TF Serving: REST (:class:`ServingClient`) and gRPC (:class:`GrpcServingClient`),
both taking raw text and answering with the export's label names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sentiment_tf.core.errors import UserError
from sentiment_tf.serving.predictor import ExportInputs, Predictions


class ServingError(UserError):
    """The server answered with an error (its message is kept) or could not be reached."""


def _instances(export: ExportInputs, segment: bool | None, texts: list[str]) -> list[str]:
    """What to send: segmented text for LSTM exports (unless ``segment`` is False), else the texts."""
    segment = export.tokenizer is not None if segment is None else segment
    return export.prepare([str(t) for t in texts]) if segment else [str(t) for t in texts]


class ServingClient:
    """TF Serving's REST predict API (``POST /v1/models/NAME[/versions/N]:predict``).

    Args:
        url: the server's REST address, e.g. ``http://localhost:8501``.
        name: the model name in TF Serving's models.config.
        export: the export's base or version directory (for labels and tokenizer settings).
        version: pin a version (default: whatever the server serves as latest).
        segment: segment text before sending; default: when the export expects segmented text.
            Pass False for `python -m sentiment_tf.serve`, which segments server-side.
        timeout: seconds per request.
        api_key: sent as ``Authorization: Bearer KEY`` (for `sentiment_tf.serve --api-key`).
    """

    def __init__(self, url: str, name: str, export: str | Path, version: int | None = None,
                 segment: bool | None = None, timeout: float = 30.0, api_key: str | None = None):
        import httpx

        self.export, self.segment = ExportInputs.load(export), segment
        path = f"/v1/models/{name}" + (f"/versions/{version}" if version else "") + ":predict"
        self.endpoint = url.rstrip("/") + path
        self._http = httpx.Client(timeout=timeout, headers={"Authorization": f"Bearer {api_key}"} if api_key else None)

    def request_body(self, texts: list[str]) -> dict[str, Any]:
        """The JSON body TF Serving expects: row format, one instance per text."""
        return {"signature_name": "serving_default", "instances": _instances(self.export, self.segment, texts)}

    def predict(self, texts: list[str]) -> Predictions:
        import httpx

        try:
            response = self._http.post(self.endpoint, json=self.request_body(texts))
        except httpx.HTTPError as err:
            raise ServingError(f"cannot reach {self.endpoint}: {err}") from None
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200:
            raise ServingError(f"{self.endpoint} answered {response.status_code}: "
                               f"{body.get('error', response.text[:200])}")
        rows = body.get("predictions")
        if not isinstance(rows, list) or len(rows) != len(texts):
            raise ServingError(f"{self.endpoint}: unexpected response {str(body)[:200]}")
        probs = [row["probabilities"] if isinstance(row, dict) else row for row in rows]
        return self.export.predictions(probs, texts)

    def close(self) -> None:
        self._http.close()


class GrpcServingClient:
    """TF Serving's gRPC PredictionService (needs ``pip install tensorflow-serving-api``)."""

    def __init__(self, target: str, name: str, export: str | Path, version: int | None = None,
                 segment: bool | None = None, timeout: float = 30.0):
        try:
            import grpc
            from tensorflow_serving.apis import prediction_service_pb2_grpc
        except ImportError:
            raise UserError("gRPC needs the optional extra: pip install 'tensorflow-serving-api==2.21.*'") from None
        self.export, self.segment = ExportInputs.load(export), segment
        self.name, self.version, self.timeout = name, version, timeout
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(target))

    def predict(self, texts: list[str]) -> Predictions:
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.name
        request.model_spec.signature_name = "serving_default"
        if self.version:
            request.model_spec.version.value = self.version
        request.inputs[self.export.input_name].CopyFrom(
            tf.make_tensor_proto(_instances(self.export, self.segment, texts), dtype=tf.string))
        try:
            result = self._stub.Predict(request, timeout=self.timeout)
        except Exception as err:  # noqa: BLE001 - grpc.RpcError and friends
            raise ServingError(f"gRPC Predict failed: {err}") from None
        return self.export.predictions(tf.make_ndarray(result.outputs["probabilities"]), texts)


