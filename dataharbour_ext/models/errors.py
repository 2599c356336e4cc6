"""The error body every API error has (as Jupyter's APIHandler writes it)."""

from pydantic import BaseModel


class ErrorBody(BaseModel):
    message: str
    reason: str | None = None
