"""`credtui`: the terminal UI for the credd agent on $CREDD_SOCK."""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="credtui", description=__doc__)
    parser.add_argument("--socket", help="agent socket (default: $CREDD_SOCK or the runtime dir)")
    parser.add_argument("--reveal-seconds", type=float, default=30.0,
                        help="hide revealed values again after this long (default 30)")
    parser.add_argument("--clipboard-seconds", type=float, default=45.0,
                        help="clear a copied value from the clipboard after this long (default 45)")
    parser.add_argument("--clipboard", choices=["auto", "osc52"], default="auto",
                        help="auto: a clipboard tool (pbcopy, wl-copy, xclip, xsel) or tmux's "
                             "buffer when there is one, else OSC 52; osc52: always OSC 52")
    args = parser.parse_args(argv)
    from credtui.app import CredApp
    app = CredApp(args.socket, reveal_seconds=args.reveal_seconds,
                  clip_seconds=args.clipboard_seconds, clipboard=args.clipboard)
    app.run()
    return app.return_code or 0


if __name__ == "__main__":
    raise SystemExit(main())
