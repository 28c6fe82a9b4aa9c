"""A real SMTP server that insists on TLS and AUTH, for gatewatch-alerting's
email tests (the plain sink is `python3 -m aiosmtpd ... -c smtp_sink.JsonSink`):

    PYTHONPATH=alerting/tests/support /usr/bin/python3 -m smtp_tls_server \
        MODE PORT CERT KEY USER PASSWORD DIR

MODE is `starttls` (STARTTLS required before anything else, then AUTH) or
`implicit` (TLS from the first byte, then AUTH). Mails go to DIR as
smtp_sink.JsonSink writes them, with `tls` and `login` filled in. Only the
given USER and PASSWORD authenticate.
"""

import signal
import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from smtp_sink import JsonSink


def main():
    mode, port, cert, key, user, password, directory = sys.argv[1:8]

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        return AuthResult(success=ok, auth_data=user if ok else None)

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    common = dict(
        hostname="127.0.0.1",
        port=int(port),
        auth_required=True,
        authenticator=authenticator,
    )
    if mode == "starttls":
        controller = Controller(
            JsonSink(directory),
            tls_context=context,
            require_starttls=True,
            auth_require_tls=True,
            **common,
        )
    elif mode == "implicit":
        # aiosmtpd's auth_require_tls only knows STARTTLS; here every byte
        # is already encrypted.
        controller = Controller(
            JsonSink(directory), ssl_context=context, auth_require_tls=False, **common
        )
    else:
        sys.exit("MODE must be starttls or implicit")
    controller.start()
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    controller.stop()


if __name__ == "__main__":
    main()
