"""credtui: the full-screen terminal UI for credd.

It talks to the agent only through `credd.async_client`; it never opens the
vault file. Secret values live only in the widgets that show them, and only
until they are hidden, the entry changes or the agent locks.
"""
