from rest_framework.pagination import CursorPagination


class PlumCursorPagination(CursorPagination):
    """Stable under inserts and constant-time per page at any depth."""

    ordering = "-id"
    page_size_query_param = "page_size"
    max_page_size = 500
