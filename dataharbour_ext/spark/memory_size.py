"""Memory sizes as people and Spark write them: "2g", "2gb", "512m", "1024MB"."""

import re

SIZE = re.compile(r"(?P<number>\d{1,9})\s*(?P<unit>[kmgt])b?", re.IGNORECASE)
MB_PER_UNIT = {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024}
EXAMPLES = "a whole number with a unit k, m, g or t (an optional b): 512m, 2g, 2gb, 1024mb"


def parse_memory_mb(text: str) -> int:
    """Whole megabytes in `text`; ValueError saying what is expected otherwise."""
    found = SIZE.fullmatch(text.strip()) if isinstance(text, str) else None
    if found is None:
        raise ValueError(f"must be {EXAMPLES}")
    megabytes = int(found["number"]) * MB_PER_UNIT[found["unit"].lower()]
    if megabytes != int(megabytes):
        raise ValueError("must be a whole number of megabytes (1024k, not 1000k)")
    return int(megabytes)


def memory_text(megabytes: int) -> str:
    """Spark's own spelling: "2g" when whole gigabytes, else "1536m"."""
    return f"{megabytes // 1024}g" if megabytes % 1024 == 0 else f"{megabytes}m"
