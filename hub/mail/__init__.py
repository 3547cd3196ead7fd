"""E-mail: appointment copies to agents and coordinators, and alerts when an agent's or an
account's sync needs attention, through a durable outbox.

- :mod:`hub.mail.settings`: the ``[email]`` section and the per-agent copy keys;
- :mod:`hub.mail.copies`: the store commit hook that writes copies to the outbox in the
  transaction of the change (debounced, collapsed per appointment and recipient);
- :mod:`hub.mail.alerts`: one alert per change of an agent's or account's attention state;
- :mod:`hub.mail.compose`: what the messages say (text, HTML, ``.ics``);
- :mod:`hub.mail.smtp` and :mod:`hub.mail.sender`: the aiosmtplib client and the background
  sender (retries, back-off, give-up);
- :mod:`hub.mail.service`: all of it tied to ``calhub serve``'s lifetime.

Kept free of imports: :mod:`hub.config` imports :mod:`hub.mail.settings` at load.
"""
