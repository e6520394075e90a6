"""aiosmtpd handlers for the notification tests (run as
`python3 -m aiosmtpd -c smtp_handlers.Picky MAILDIR` with this directory on
PYTHONPATH).

Picky stores what it accepts in a Maildir like aiosmtpd's Mailbox, but:
* refuses every recipient whose address starts with `nobody@`
  (550: retrying cannot help);
* answers `451` (try again later) the first time it sees a recipient whose
  address starts with `flaky@`, then accepts it.
"""
from aiosmtpd.handlers import Mailbox


class Picky(Mailbox):
    def __init__(self, mail_dir):
        super().__init__(mail_dir)
        self.seen = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.lower()
        if local.startswith("nobody@"):
            return "550 5.1.1 <%s>: no such user here" % address
        if local.startswith("flaky@") and local not in self.seen:
            self.seen.add(local)
            return "451 4.3.0 mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"


class Slow(Mailbox):
    """Accepts every message, a quarter of a second after its data arrives
    (so a test can kill a sender while messages are in flight)."""

    async def handle_DATA(self, server, session, envelope):
        import asyncio

        await asyncio.sleep(0.25)
        return await super().handle_DATA(server, session, envelope)
