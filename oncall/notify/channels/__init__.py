"""Delivery channels: email over SMTP, signed webhooks, SMS through an HTTP gateway.

Each channel turns one :class:`~oncall.notify.channels.base.Outgoing` into one
network exchange and answers with a receipt, or raises
:class:`~oncall.notify.channels.base.DeliveryFailed`. Channels touch no database:
the relay (:mod:`oncall.notify.outbox`) records attempts and outcomes.
"""
