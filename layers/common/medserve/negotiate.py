"""``Accept`` q-values (RFC 9110, section 12.5.1): the quality a header gives one media type.

:func:`medserve.api.negotiate` chooses among a route's representations with it.
"""

from __future__ import annotations


def _ranges(accept: str) -> list[tuple[str, float]]:
    """``[(media range, q)]`` of an ``Accept`` value; a malformed q counts as 0 (not acceptable)."""
    out: list[tuple[str, float]] = []
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if not media:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = min(1.0, max(0.0, float(value.strip())))
                except ValueError:
                    q = 0.0
                if q != q:  # NaN
                    q = 0.0
        out.append((media.lower(), q))
    return out


def quality(accept: str, media_type: str) -> float:
    """The q-value ``accept`` gives ``media_type``: from its most specific matching range (0 when none)."""
    main = media_type.split("/", 1)[0]
    best: tuple[int, float] = (-1, 0.0)
    for media, q in _ranges(accept):
        specificity = 2 if media == media_type else 1 if media == f"{main}/*" else 0 if media == "*/*" else -1
        if specificity > best[0]:
            best = (specificity, q)
    return best[1]
