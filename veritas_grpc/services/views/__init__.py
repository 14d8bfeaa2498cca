"""What the use cases hand to the servicers: frozen dataclasses of plain values (str,
UUID, Decimal, float, int, datetime, domain enums), never typed models or rows.

Each view is built here from the typed models, by the use case that read them, with
every computed figure (means, rates, bands, attempts left, locked rules) already in
it: the servicers only map fields to messages.
"""
