"""What counts as an external reference in a run report page."""
import re

# A reference to anything outside the file: a URL scheme, a protocol-relative URL, or a
# src/href/url() that is not an in-page anchor or a data: URI.
EXTERNAL = re.compile(r"(?:https?|ftp|wss?)://|(?:src|href)\s*=\s*[\"']?(?!#|data:)[^\"'\s>]"
                      r"|url\(\s*[\"']?(?!#|data:)", re.I)
