"""An aiosmtpd handler that writes every received mail as one JSON file.

Used by gatewatch-alerting's email tests, which start a real SMTP server per
test with Debian's python3-aiosmtpd:

    PYTHONPATH=alerting/tests/support /usr/bin/python3 -m aiosmtpd -n \
        -l 127.0.0.1:PORT -c smtp_sink.JsonSink DIR

Each mail becomes DIR/NNNN.json (written to a temp name, then renamed, so a
reader never sees half a file) with the envelope, every header as parsed
(RFC 2047 words decoded), the raw header block, and the decoded text/plain
and text/html parts.
"""

import email
import itertools
import json
import os
from email import policy


class JsonSink:
    def __init__(self, directory):
        self.directory = directory
        self.counter = itertools.count()

    @classmethod
    def from_cli(cls, parser, *args):
        if len(args) != 1:
            parser.error("JsonSink takes exactly one argument: a directory")
        return cls(args[0])

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        msg = email.message_from_bytes(raw, policy=policy.default)
        parts = {}
        for part in msg.walk():
            ctype = part.get_content_type()
            if ctype in ("text/plain", "text/html") and ctype not in parts:
                parts[ctype] = part.get_content()
        head = raw.split(b"\r\n\r\n", 1)[0]
        doc = {
            # How the mail came in: over TLS or not, and as which AUTH user.
            "tls": server.transport.get_extra_info("ssl_object") is not None,
            "login": getattr(session, "auth_data", None),
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "content_type": msg.get_content_type(),
            "headers": [[k, str(v)] for k, v in msg.items()],
            "raw_headers": head.decode("ascii", "replace"),
            "text": parts.get("text/plain"),
            "html": parts.get("text/html"),
        }
        n = next(self.counter)
        tmp = os.path.join(self.directory, ".%04d.tmp" % n)
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(doc, f)
        os.rename(tmp, os.path.join(self.directory, "%04d.json" % n))
        return "250 Message accepted for delivery"
