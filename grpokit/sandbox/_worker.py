"""Untrusted side: a fresh interpreter that runs the program (source text, `python -I -S -c`).

Nothing here is trusted by anyone: the program runs in this process and may rewrite any of it.
The harness only believes what it can check itself (plain values, see `_codec`), so this file's
job is convenience for honest programs: load the code, serve calls, report how things went.

The `_codec` source is prepended to this file when it is sent into the sandbox.
"""

import builtins
import os
import sys

_MAX_ITEMS = 1_000_000  # an iterator returned by the candidate is materialised up to this length


class _Quitter:
    """`exit()` / `quit()` as the site module would define them (we start with -S)."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"Use {self.name}() or Ctrl-D (i.e. EOF) to exit"

    def __call__(self, code=None):
        raise SystemExit(code)


def _prepare_builtins(site_packages):
    if site_packages:
        import site

        site.main()
    else:
        builtins.exit, builtins.quit = _Quitter("exit"), _Quitter("quit")


def _text(exc):
    try:
        return str(exc)[:300]
    except BaseException:
        return "<unprintable>"


def _pack(value):
    """Plain data for the harness. Iterators (generators, map, filter...) travel as lists."""
    if hasattr(type(value), "__next__") and hasattr(type(value), "__iter__"):
        items = []
        for item in value:
            items.append(item)
            if len(items) > _MAX_ITEMS:
                raise ValueError("the returned iterator is too long to send")
        return {"ok": {"it": encode_value(items)}}  # noqa: F821
    return {"ok": encode_value(value)}  # noqa: F821


def _load_error(wfd, exc):
    try:
        send_frame(wfd, {"load": "error", "type": type(exc).__name__, "msg": _text(exc)})  # noqa: F821
    except BaseException:
        pass
    import traceback

    traceback.print_exception(type(exc), exc, exc.__traceback__)
    sys.stderr.flush()
    os._exit(1)


def _serve(program, rfd, wfd):
    namespace = {"__name__": "__candidate__", "__builtins__": builtins}
    try:
        exec(program, namespace)
    except BaseException as exc:  # SystemExit included: exiting before the tests is not passing
        _load_error(wfd, exc)
    send_frame(wfd, {"load": "ok"})  # noqa: F821
    sys.stdout.flush()
    while True:
        try:
            request = recv_frame(rfd)  # noqa: F821
        except EOFError:
            os._exit(0)
        function = namespace.get(request.get("call"))
        try:
            if not callable(function):
                raise NameError(f"name {request.get('call')!r} is not defined")
            args = decode_value(request["args"])  # noqa: F821
            kwargs = decode_value(request["kwargs"])  # noqa: F821
            reply = _pack(function(*args, **kwargs))
        except BaseException as exc:
            reply = {"raise": type(exc).__name__, "msg": _text(exc)}
        try:
            sys.stdout.flush()
        except BaseException:
            pass
        send_frame(wfd, reply)  # noqa: F821


def _run_main(program, wfd):
    send_frame(wfd, {"load": "ok"})  # noqa: F821
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    try:
        exec(program, namespace)
    except SystemExit:
        raise
    except BaseException as exc:
        try:
            send_frame(wfd, {"exc": type(exc).__name__})  # noqa: F821
        except BaseException:
            pass
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next)
        sys.exit(1)


def main():
    rfd, wfd = int(sys.argv[1]), int(sys.argv[2])
    # A correct program may print a long integer; the time and CPU limits bound the cost instead.
    sys.set_int_max_str_digits(0)
    request = recv_frame(rfd)  # noqa: F821
    _prepare_builtins(request.get("site"))
    try:
        program = compile(request["code"], "<program>", "exec")
    except BaseException as exc:  # SyntaxError, ValueError (NUL bytes), RecursionError, MemoryError
        _load_error(wfd, exc)
    if request["mode"] == "io":
        _run_main(program, wfd)
    else:
        _serve(program, rfd, wfd)


if __name__ == "__main__":
    main()
