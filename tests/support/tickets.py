"""Support tickets in classes of several sizes, and rows counted per class."""


def _per_class(rows) -> dict:
    counts = {}
    for _, label in rows:
        counts[label] = counts.get(label, 0) + 1
    return counts


TICKET_CLASSES = {"billing": 150, "login": 100, "shipping": 60, "refund": 35, "legal": 15,
                  "pair": 2, "single": 1}


def _tickets(sizes=TICKET_CLASSES, start=0) -> list:
    return [(f"{label} ticket number {i}", label)
            for label, size in sizes.items() for i in range(start, start + size)]
