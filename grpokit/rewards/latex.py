"""LaTeX answers compared by math-verify, guarded and in time: ``latex_equivalent(gold, pred)``.

It answers True, False, or None when it could not judge. It is the last step of
``answers_match`` (matching.py), after exact numbers, normalised text, choices and equations;
math-verify ``parse``s both sides and ``verify(gold, pred)`` decides under a wall-clock limit.

The guard. math-verify parses what it can and drops the rest: ``2\\mathrm{e}`` parses as
``2`` and ``2\\sqrt{3}+\\text{m}`` as ``2``, so a fragment could be judged equal to the
reference. Constants people write in several ways (``\\mathrm{e}``, ``{\\rm e}``,
``\\mathrm{\\pi}``, ``\\exp(1)``) are first rewritten to the forms it reads by value
(``e``, ``\\pi``); then a "True" from math-verify stands only if both sides parsed whole:
braces balance, every command is one it knows (``\\frac``, ``\\sqrt``, ``\\pi``, ...; not
``\\foo``), and what it read, less unit words in ``\\text{}``, is all of the input and does
not end in an operator. Otherwise the verdict is None, "could not judge", which the scorer
counts in its ``none_share``; a "False" stands as it is.

The time limit. math-verify's own timeouts use ``signal.alarm`` with whole seconds, swallow the
timeout into a plain ``False`` (a wrong answer, not "could not judge") and raise in any thread
other than the main one. So we switch them off and run our own limit instead:

* main thread: ``signal.setitimer`` raising a ``BaseException`` subclass, so math-verify's and
  sympy's ``except Exception`` blocks cannot swallow it; any outer timer is restored after;
* other threads (signals are impossible there): the check runs in one helper process that owns
  its main thread; if it does not answer in time it is killed and restarted.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
import re
import signal
import threading
import time

from .numbers import normalize_text

__all__ = ["latex_equivalent", "canonical_latex", "DEFAULT_TIMEOUT_S"]

DEFAULT_TIMEOUT_S = 5.0

log = logging.getLogger("grpokit.rewards")


class _Deadline(BaseException):
    """Raised from SIGALRM; a BaseException so that ``except Exception`` lets it through."""


class _TimerState:
    active = False


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Raise ``_Deadline`` in the main thread if the body runs longer than ``seconds``."""
    state = _TimerState()

    def on_alarm(signum, frame):
        if state.active:
            raise _Deadline()

    old_handler = signal.signal(signal.SIGALRM, on_alarm)
    started = time.monotonic()
    state.active = True
    # The 50 ms repeat re-raises if some bare ``except:`` deep in a parser swallowed the first one.
    old_delay, _ = signal.setitimer(signal.ITIMER_REAL, seconds, 0.05)
    try:
        yield
    finally:
        while True:  # an alarm landing here must not skip the cleanup below
            try:
                state.active = False
                break
            except _Deadline:
                continue
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        if old_delay > 0:  # someone else's timer (pytest-timeout, a trainer watchdog) goes on
            remaining = old_delay - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(remaining, 1e-3))


@functools.lru_cache(maxsize=1)
def _math_verify():
    import math_verify  # heavy (sympy, antlr): imported only when a LaTeX answer needs it
    import math_verify.grader
    import math_verify.parser

    # We pass timeouts of None on purpose (see the module docstring); silence the one-time
    # warning math-verify prints about that.
    math_verify.grader.TIMEOUT_WARNING_SHOWN = True
    math_verify.parser.TIMEOUT_WARNING_SHOWN = True
    return math_verify


_ROMAN = r"\\(?:mathrm|text|textrm|operatorname|mathit|rm|mathnormal)"
_CONSTANTS = (
    (re.compile(_ROMAN + r"\s*\{\s*e\s*\}|\{\s*\\rm\s+e\s*\}|\\mathrm\s+e(?![a-zA-Z])"), "e"),
    (re.compile(_ROMAN + r"\s*\{\s*(\\pi)\s*\}|\{\s*\\rm\s*(\\pi)\s*\}"), r"\\pi"),
    (re.compile(r"\\exp\s*(?:\\left\s*)?\(\s*1\s*(?:\\right\s*)?\)|\\exp\s*\{\s*1\s*\}"), "e"),
)
_UNIT_TEXT = re.compile(r"\\(?:text|textrm|mbox|mathrm)\s*\{\s*[A-Za-z][A-Za-z .]*\}")
_OPEN_END = ("+", "-", "*", "/", "^", "_", "=", "\\cdot", "\\times", "\\div", ",", "(", "{")


def canonical_latex(expression: str) -> str:
    """``expression`` with constants in the forms math-verify reads by value: ``\\mathrm{e}``,
    ``{\\rm e}``, ``\\exp(1)`` become ``e``; ``\\mathrm{\\pi}`` becomes ``\\pi``."""
    for pattern, replacement in _CONSTANTS:
        expression = pattern.sub(replacement, expression)
    return expression


# LaTeX commands math-verify reads; anything else (``\\foo``, a typo) it may silently drop.
_KNOWN_COMMANDS = frozenset("""
    frac dfrac tfrac cfrac sqrt left right big Big bigl bigr Bigl Bigr text textbf textrm mbox
    mathrm mathbf mathit mathnormal mathbb operatorname rm displaystyle boxed fbox
    pi infty circ degree pm mp cdot times div ast star cdots ldots dots vdots ddots
    le leq ge geq ne neq lt gt approx equiv sim in notin cup cap setminus subset subseteq
    supset supseteq emptyset varnothing to rightarrow mapsto angle triangle perp parallel mid
    sin cos tan cot sec csc arcsin arccos arctan sinh cosh tanh log ln lg exp max min gcd lcm
    det deg lim sum prod int binom dbinom tbinom choose pmod bmod mod floor ceil lfloor
    rfloor lceil rceil langle rangle vert lvert rvert Vert lVert rVert prime overline vec hat
    bar tilde dot begin end pmatrix bmatrix matrix vmatrix array cases quad qquad
    alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda mu nu
    xi omicron rho varrho sigma varsigma tau upsilon phi varphi chi psi omega Gamma Delta
    Theta Lambda Xi Pi Sigma Upsilon Phi Psi Omega
""".split())
_COMMAND = re.compile(r"\\([a-zA-Z]+)")
_ESCAPED_BRACE = re.compile(r"\\[{}]")


def _readable(expression: str) -> bool:
    """Balanced braces and only commands math-verify knows: it cannot drop part of this."""
    braces = _ESCAPED_BRACE.sub("", expression)
    if braces.count("{") != braces.count("}"):
        return False
    return all(name in _KNOWN_COMMANDS for name in _COMMAND.findall(expression))


def _parsed_whole(expression: str, parsed) -> bool:
    """Did math-verify read all of ``expression``? ``parsed[-1]`` is the text it read."""
    if not _readable(expression):
        return False
    if not parsed or not isinstance(parsed[-1], str):
        return True  # nothing to compare with: trust it
    read = normalize_text(parsed[-1])
    if read.endswith(_OPEN_END):
        return False
    whole = normalize_text(expression)
    if read == whole:
        return True
    at = whole.find(read)
    if at < 0:
        return True  # math-verify rewrote the text (\mathrm -> \text...): cannot tell
    rest = whole[:at] + whole[at + len(read):]
    return not normalize_text(_UNIT_TEXT.sub("", rest)).strip(".,;:")


def _parse(expression: str):
    mv = _math_verify()
    return mv.parse("$" + canonical_latex(expression) + "$", parsing_timeout=None)


@functools.lru_cache(maxsize=4096)
def _parse_gold(gold: str):
    """Gold answers repeat G times per prompt: parse each once. Timeouts are never cached."""
    return _parse(gold)


def _verify_unlimited(gold: str, pred: str) -> bool | None:
    gold_parsed = _parse_gold(gold)
    pred_parsed = _parse(pred)
    if not gold_parsed or not pred_parsed:
        return False
    if not _math_verify().verify(gold_parsed, pred_parsed, timeout_seconds=None):
        return False
    if _parsed_whole(canonical_latex(gold), gold_parsed) and _parsed_whole(
            canonical_latex(pred), pred_parsed):
        return True
    log.debug("math-verify read only part of gold=%r or pred=%r: not judged", gold, pred)
    return None


def _verify_in_main_thread(gold: str, pred: str, timeout_s: float | None) -> bool | None:
    if not timeout_s or timeout_s <= 0:
        return _verify_unlimited(gold, pred)
    try:
        with _time_limit(timeout_s):
            return _verify_unlimited(gold, pred)
    except _Deadline:
        log.debug("math-verify gave up after %.1fs on gold=%r pred=%r", timeout_s, gold, pred)
        return None


# ----------------------------------------------------------------------------- helper process


def _helper_loop(conn) -> None:  # runs in the helper process, in its main thread
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        gold, pred, timeout_s = request
        try:
            conn.send(("ok", _verify_in_main_thread(gold, pred, timeout_s)))
        except Exception as exc:  # report, keep serving
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


class _Helper:
    """One spawned process that runs math-verify for callers outside the main thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process = None
        self._conn = None

    def _start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self._process = ctx.Process(target=_helper_loop, args=(child,), daemon=True)
        self._process.start()
        child.close()
        self._conn = parent

    def _kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.join(timeout=5)
        self._process = self._conn = None

    def verify(self, gold: str, pred: str, timeout_s: float | None) -> bool | None:
        # The child enforces timeout_s itself; the outer wait only catches a hung child
        # (and allows for the first call's start-up, which imports sympy).
        outer = (timeout_s or DEFAULT_TIMEOUT_S) * 2 + 30.0
        with self._lock:
            if self._process is None or not self._process.is_alive():
                try:
                    self._start()
                except (AssertionError, OSError, RuntimeError) as exc:
                    # e.g. we are inside a daemonic process, which may not have children
                    log.warning("no math-verify helper process (%s); checking without a time "
                                "limit in this thread", exc)
                    return _verify_unlimited(gold, pred)
            try:
                self._conn.send((gold, pred, timeout_s))
                if not self._conn.poll(outer):
                    log.warning("math-verify helper did not answer in %.0fs; restarting it", outer)
                    self._kill()
                    return None
                status, value = self._conn.recv()
            except (EOFError, OSError, BrokenPipeError) as exc:
                log.warning("math-verify helper died (%s); restarting it", exc)
                self._kill()
                return None
        if status == "error":
            raise RuntimeError(f"math-verify failed in the helper process: {value}")
        return value

    def close(self) -> None:
        with self._lock:
            self._kill()


_HELPER = _Helper()


def latex_equivalent(gold: str, pred: str, *, timeout_s: float | None = DEFAULT_TIMEOUT_S):
    """math-verify's verdict on ``pred`` against ``gold`` (LaTeX without ``$``); None on timeout
    or when "equal" rests on a part of either side (see the module docstring).

    ``timeout_s`` bounds parsing and verification together; None or 0 means no limit.
    """
    if threading.current_thread() is threading.main_thread():
        return _verify_in_main_thread(gold, pred, timeout_s)
    return _HELPER.verify(gold, pred, timeout_s)
