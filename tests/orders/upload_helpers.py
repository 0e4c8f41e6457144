"""Builders for upload tests: CSV bytes, and running an upload's chunks in-process."""

from orders.models import UploadChunk
from orders.services.uploads import upload_chunk_dispatch

HEADER = "external_id,name,email,phone,country,channel,value,reference"


def row(n: int, **cells) -> str:
    values = {
        "external_id": f"EMP-{n:06d}",
        "name": f"Person {n}",
        "email": f"person{n}@example.com",
        "phone": f"+9198{n:08d}",
        "country": "IN",
        "channel": "",
        "value": "",
        "reference": f"ref-{n}",
        **cells,
    }
    return ",".join(values[c] for c in HEADER.split(","))


def csv_bytes(*lines: str, header: str = HEADER, encoding: str = "utf-8") -> bytes:
    return ("\r\n".join([header, *lines]) + "\r\n").encode(encoding)


def rows_csv(count: int, start: int = 1) -> bytes:
    return csv_bytes(*(row(n) for n in range(start, start + count)))


def run_chunks(upload) -> int:
    """Every open chunk of the upload, in this process (what the workers do)."""
    done = 0
    for chunk_id in (
        UploadChunk.objects.filter(upload=upload).order_by("number").values_list("pk", flat=True)
    ):
        done += upload_chunk_dispatch(chunk_id=chunk_id)
    return done
