"""`inject`: the agent renders a template's references into a file the caller opened.

A `use` grant's programs never receive a value over the socket (docs/grants.md),
so `credd inject -o FILE` under one hands the agent the file instead: only a
grant made with `--inject` allows it, since the program can then read the file
(a configuration file for a service, say). The owner and read or write grants
may do it too: they could fetch the values anyway. The descriptor must be a
regular file (a pipe with no reader would hang the agent); the references
resolve among the names the grants cover, and the values are audited
(`inject_file`, fail closed) before a byte is written.
"""

from __future__ import annotations

import os
import stat

from credd import protocol as p
from credd.errors import BadRequest, Denied
from credd.refs import find_template_refs, render

from . import handlers as h
from .run_handler import RunCaller
from .state import AgentState


async def inject(state: AgentState, conn: RunCaller, req: p.Inject) -> p.Ok:
    if any(g.mode == "use" and not g.inject for g in conn.binding.grants):
        raise Denied(f"this connection's grant {conn.binding.grant_id} (use mode) does not "
                     "let the agent write values into files: the owner grants that with "
                     "`credd grant create --inject`")
    wanted = find_template_refs(req.template)
    fds, _ = await conn.take_over(p.Ready(), 1)
    try:
        if not stat.S_ISREG(os.fstat(fds[0]).st_mode):
            raise BadRequest("inject writes into a regular file the client opened")
        values, _ = (h.secret_values(state, conn, h.store_for(state, conn), wanted,
                                     "inject_file") if wanted else ({}, {}))
        data = memoryview(render(req.template, values).encode())
        while data:
            data = data[os.write(fds[0], data):]
    finally:
        os.close(fds[0])
    return p.Ok()
