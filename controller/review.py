"""Pure: what merging a pull request does to each rollout, and the check that PR needs.

`rollout check --base REF` (cli) loads the repository at the PR's base and head and calls `changes`;
it measures the gates of each promotion and hands them to `judge`. The kind of a PR is read from
what it changes, never from its branch name: only a PR that lets a canary's exposure grow needs
passing gates; every other PR (a revert, a pause, a retry, a completion, a decommission, a human's
spec change) records something, says what, and is mergeable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from controller import errors, evidence, gates, load, plan, report, traffic


class Effect(StrEnum):
    PROMOTION = "promotion"  # the canary's exposure grows: its gates must pass
    ROLLBACK = "rollback"  # records a rolled-back revision (canary 0)
    PAUSE = "pause"  # records a pause: the canary holds where it is
    RETRY = "retry"  # lets a rolled-back or paused revision run again from where it may start
    COMPLETION = "completion"  # the canary, already at 100%, becomes the stable
    DECOMMISSION = "decommission"  # the old stable, at weight 0, is removed
    SPEC = "spec"  # a human's change that grows no canary's exposure (a new canary starts at step 1)
    REMOVED = "removed"  # the rollout's file is gone


@dataclass(frozen=True)
class RolloutChange:
    """One rollout a PR changes: what kind of change, and what merging it records, in words."""

    name: str
    kind: Effect
    records: str
    measure: load.LoadedRollout | None = None  # PROMOTION: the rollout as the base has it, gates to measure
    refused: str = ""  # PROMOTION that no measurement can back: why


@dataclass(frozen=True)
class Result:
    """A change with its verdict: PASS unless it is a promotion whose gates did not all pass."""

    change: RolloutChange
    verdict: gates.Verdict
    evidence: tuple[gates.GateEvidence, ...] = ()
    why: str = ""  # why a promotion did not pass, in one line

    @property
    def mergeable(self) -> bool:
        return self.verdict is gates.Verdict.PASS


@dataclass(frozen=True)
class Review:
    """Every change of a PR, and the files that did not load at its head (which fail the check)."""

    results: tuple[Result, ...] = ()
    unreadable: tuple[errors.Problem, ...] = field(default_factory=tuple)

    @property
    def mergeable(self) -> bool:
        return not self.unreadable and all(r.mergeable for r in self.results)


# -- classify ----------------------------------------------------------------------------------------


def changes(before: load.RepoSpec, after: load.RepoSpec) -> list[RolloutChange]:
    """Each rollout whose spec, status or prompts differ between the PR's base and head, classified."""
    if after.config is None:
        return []  # nothing at the head can be read: the problems say why
    old = {r.path: r for r in before.rollouts}
    new = {r.path: r for r in after.rollouts}
    broken = {"/".join(p.file.split("/")[:2]) + "/" for p in after.problems}  # rollouts/NAME/
    out = []
    for path in sorted(old.keys() | new.keys()):
        if path not in new and any(path.startswith(d) for d in broken):
            continue  # it does not load at the head: reported as unreadable, not as removed
        found = classify(old.get(path), new.get(path))
        if found is not None:
            out.append(found)
    return out


def classify(b: load.LoadedRollout | None, h: load.LoadedRollout | None) -> RolloutChange | None:
    """What merging does to one rollout, from its base (`b`, None: absent) to its head (`h`)."""
    if h is None:
        assert b is not None
        return RolloutChange(
            b.name, Effect.REMOVED, f"removes the rollout {b.name}; the controller no longer manages its route"
        )
    if b is not None and _same(b, h):
        return None
    name = h.name
    canary = h.revisions.get(traffic.CANARY)
    same = b is not None and canary is not None and b.revisions.get(traffic.CANARY) == canary
    promoted = _promotion(b, h, same=same)
    if promoted is not None:
        return promoted
    if canary is not None and plan.rolled_back(h) and not (same and b is not None and plan.rolled_back(b)):
        return RolloutChange(
            name, Effect.ROLLBACK, f"records the rollback of revision {canary}: its canary stays at 0%"
        )
    if same and b is not None and plan.paused(h) and not plan.paused(b):
        return RolloutChange(
            name,
            Effect.PAUSE,
            f"records the pause of revision {canary} at {_at(h)}: it holds there until a human decides",
        )
    moving = not plan.rolled_back(h) and not plan.paused(h)
    if same and b is not None and moving and (plan.rolled_back(b) or plan.paused(b)):
        return RolloutChange(name, Effect.RETRY, f"lets revision {canary} run again from {_at(h)}")
    if b is not None:
        was = b.revisions.get(traffic.CANARY)
        if canary is None and was is not None and h.revisions.get(traffic.STABLE) == was:
            return RolloutChange(
                name, Effect.COMPLETION, f"records the completion: revision {was}, already at 100%, is the stable"
            )
        if b.rollout.spec.previous is not None and h.rollout.spec.previous is None:
            return RolloutChange(
                name,
                Effect.DECOMMISSION,
                f"removes the old stable (revision {b.revisions.get(traffic.PREVIOUS)}) at 0%",
            )
    if b is None:
        return RolloutChange(
            name, Effect.SPEC, f"adds the rollout {name}" + (f", its canary at {_at(h)}" if canary else "")
        )
    if canary is not None and not same and not plan.rolled_back(h):
        return RolloutChange(name, Effect.SPEC, f"starts a new canary, revision {canary}, at {_at(h)}")
    return RolloutChange(name, Effect.SPEC, "changes the spec; no canary gets more traffic")


def _promotion(b: load.LoadedRollout | None, h: load.LoadedRollout, *, same: bool) -> RolloutChange | None:
    """A PROMOTION when merging lets a canary get more traffic than the base lets it have; else None.

    Within one canary revision that is a higher `status.step`, or a bigger weight or shadow for the
    step it is at, in any cohort (a cohort opened, raised, widened or moved ahead of another); for a new revision (or one the base rolled back), anything past step 1; and a
    completion from a step below 100%. Only the base's gates, measured against the base's
    Prometheus, can back it: the PR itself may have loosened them."""
    name = h.name
    canary = h.revisions.get(traffic.CANARY)
    if canary is not None and not plan.rolled_back(h):
        step = plan.current_step(h)
        if same and b is not None and not plan.rolled_back(b):
            grows = step > plan.current_step(b) or plan.desired_state(b).raises(plan.desired_state(h))
            if grows:
                return RolloutChange(
                    name, Effect.PROMOTION, f"raises revision {canary} from {_at(b)} to {_at(h)}", measure=b
                )
        elif step > 0:
            why = "a rolled-back revision" if same else "a new canary revision"
            return RolloutChange(
                name,
                Effect.PROMOTION,
                f"starts revision {canary} at {_at(h)}",
                refused=f"{why} starts at step 1; no measurement backs a start at step {step + 1}",
            )
        return None
    was = b.revisions.get(traffic.CANARY) if b is not None else None
    if b is not None and was is not None and canary is None and not plan.rolled_back(b):
        weight = _exposure(b)[0]
        if h.revisions.get(traffic.STABLE) == was and weight < 100:
            return RolloutChange(name, Effect.PROMOTION, f"makes revision {was} the stable from {_at(b)}", measure=b)
    return None


def _same(b: load.LoadedRollout, h: load.LoadedRollout) -> bool:
    return b.rollout == h.rollout and b.revisions == h.revisions and b.prompt_digests == h.prompt_digests


def _exposure(loaded: load.LoadedRollout) -> tuple[int, int]:
    """(weight, shadow) main gives the canary."""
    state = plan.desired_state(loaded)
    return state.weights.get(traffic.CANARY, 0), state.shadow


def _at(loaded: load.LoadedRollout) -> str:
    steps = loaded.rollout.spec.steps
    index = plan.current_step(loaded)
    return f"step {index + 1} of {len(steps)} ({steps[index].describe()})"


# -- judge -------------------------------------------------------------------------------------------


def judge(
    found: Sequence[RolloutChange],
    measured: Mapping[str, Sequence[gates.GateEvidence] | str],
    *,
    unreadable: Sequence[errors.Problem] = (),
) -> Review:
    """Each change with its verdict. `measured` has, per promotion that has a `measure`, its gates'
    evidence or why they could not be measured."""
    results = []
    for c in found:
        if c.kind is not Effect.PROMOTION:
            results.append(Result(c, gates.Verdict.PASS))
            continue
        if c.refused:
            results.append(Result(c, gates.Verdict.FAIL, why=c.refused))
            continue
        got = measured.get(c.name, "the gates were not measured")
        if isinstance(got, str):
            results.append(Result(c, gates.Verdict.ERROR, why=got))
            continue
        verdict = gates.worst(gates.deciding(got))  # the split check holds a promotion on FAIL or ERROR only
        why = "" if verdict is gates.Verdict.PASS else _why(got, verdict)
        results.append(Result(c, verdict, tuple(got), why))
    return Review(tuple(results), tuple(unreadable))


def _why(found: Sequence[gates.GateEvidence], verdict: gates.Verdict) -> str:
    if not found:
        return "the rollout has no gates: nothing backs a promotion"
    names = ", ".join(e.name for e in found if e.verdict is verdict)
    return f"gates {verdict}: {names}"


# -- render ------------------------------------------------------------------------------------------


def headline(review: Review) -> str:
    """One line: mergeable or not, and how many changes of which kind (no markdown or workflow-command
    syntax in it: the action prints it as an annotation)."""
    if not review.results and not review.unreadable:
        return "mergeable: changes no rollout"
    kinds: dict[str, int] = {}
    for r in review.results:
        kinds[r.change.kind.value] = kinds.get(r.change.kind.value, 0) + 1
    counted = ", ".join(f"{n} {k}" for k, n in kinds.items())
    if review.unreadable:
        n = len(review.unreadable)
        counted = ", ".join(
            x for x in (counted, f"{n} {'file that does' if n == 1 else 'files that do'} not load") if x
        )
    return f"{'mergeable' if review.mergeable else 'NOT mergeable'}: {counted}"


def _line(r: Result) -> str:
    text = f"{r.change.name} ({r.change.kind}): merging {r.change.records}"
    if r.change.kind is Effect.PROMOTION:
        text += f"; gates {r.verdict}" + (f" ({r.why})" if r.why else "")
    return text


def text(review: Review, *, at: str) -> str:
    lines = [headline(review), ""]
    lines += [f"- {_line(r)}" for r in review.results]
    lines += [f"- does not load: {p}" for p in review.unreadable]
    for r in review.results:
        if r.evidence:
            lines += ["", evidence.text(r.change.name, r.evidence, at=at).rstrip("\n")]
    return "\n".join(lines) + "\n"


def markdown(review: Review, *, at: str) -> str:
    lines = [f"## Rollout check: {report.md(headline(review))}", ""]
    if review.results:
        lines += ["| rollout | change | merging | gates |", "|---|---|---|---|"]
    for r in review.results:
        gated = r.change.kind is Effect.PROMOTION
        verdict = f"**{r.verdict}**" + (f": {report.md(r.why)}" if r.why else "") if gated else "not needed"
        lines.append(f"| {report.md(r.change.name)} | {r.change.kind} | {report.md(r.change.records)} | {verdict} |")
    lines += [f"- does not load (`rollout validate` says why): {report.md(p)}" for p in review.unreadable]
    for r in review.results:
        if r.evidence:
            lines += ["", evidence.markdown(r.change.name, r.evidence, at=at).rstrip("\n")]
    return "\n".join(lines) + "\n"


def json_text(review: Review, *, at: str) -> str:
    doc = {
        "at": at,
        "mergeable": review.mergeable,
        "changes": [
            {
                "rollout": r.change.name,
                "kind": r.change.kind.value,
                "records": r.change.records,
                "verdict": str(r.verdict),
                "why": r.why,
                "gates": evidence.to_json(r.change.name, r.evidence, at=at)["gates"] if r.evidence else [],
            }
            for r in review.results
        ],
        "unreadable": [str(p) for p in review.unreadable],
    }
    return json.dumps(doc, indent=2) + "\n"
