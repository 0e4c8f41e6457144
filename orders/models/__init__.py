"""Orders' data, one module per part of the app. Django finds the models through these imports."""

from orders.models.order import ORDER_TRANSITIONS, Order

__all__ = ["ORDER_TRANSITIONS", "Order"]

from orders.models.uploads import UPLOAD_TRANSITIONS, Upload, UploadChunk, UploadRow  # noqa: E402

__all__ += ["UPLOAD_TRANSITIONS", "Upload", "UploadChunk", "UploadRow"]
