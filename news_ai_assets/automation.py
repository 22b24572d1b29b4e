"""Keeping the tables current with Dagster's own mechanisms (README: "Keeping current").

- `mind_files_sensor` watches the MIND folder. A file new or changed since its last tick (size
  and mtime, then SHA-256, as staging records them) becomes runs: a behaviors.tsv for the days
  whose bronze/behaviors data version the files no longer give (each day's lines, read as staging
  reads them; versions.py), one run per day and change (run keys); a news.tsv for bronze/news
  and an entity_embedding.vec for features/entity_features on every day, since their lines carry
  no day (only days whose articles changed get a new version and flow on). Days outside the
  partitions are reported in the tick's log, never dropped in silence.
- `carry_changes_downstream` evaluates CARRY_CHANGES (assets/common.py) on every asset
  downstream: a partition is requested when a partition it reads got a new data version, so a
  changed day reaches the user features and silver of exactly the days that read it, and
  nothing else runs.
- The raw-file sensor's runs (and the schedule's, definitions.py) carry `dagster/max_runtime`,
  derived from the impressions they cover (run_time_limit); dagster.yaml's run monitoring ends a
  run past it. The automation sensor's run tags are static, so its runs fall under dagster.yaml's
  max_runtime_seconds.
Both sensors start stopped: switch them on in the UI (Automation) or with `dagster sensor start`.
"""

import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path

import dagster as dg

from news_ai_assets.assets.bronze import BEHAVIORS, NEWS
from news_ai_assets.assets.entities import ENTITY_FEATURES
from news_ai_assets.assets.versions import behaviors_day_version, latest_data_versions
from news_ai_assets.mind.reader import day_contents, discover_splits
from news_ai_assets.resources import MindSource
from news_ai_assets.settings import SETTINGS, daily_partitions
from news_ai_assets.storage.staging import sha256_of

# A run may take START_SECONDS plus SECONDS_PER_100K_IMPRESSIONS for each 100,000 impressions of its
# days (at least MIN_DAY_SECONDS a day): a new MIND-large day (~340,000 impressions) gets 1,008 s,
# ~10x the 104.5 s it took on 2 cores (docs/benchmark.md).
START_SECONDS, SECONDS_PER_100K_IMPRESSIONS, MIN_DAY_SECONDS = 600, 120, 60
WATCHED = {"behaviors.tsv": BEHAVIORS, "news.tsv": NEWS, "entity_embedding.vec": ENTITY_FEATURES}


def run_time_limit(impressions_by_day: Mapping[dt.date, int]) -> dict[str, str]:
    """The tags that limit a run over these days (dagster/max_runtime) and say how it was derived."""
    per_day = {day: max(MIN_DAY_SECONDS, round(SECONDS_PER_100K_IMPRESSIONS * n / 100_000))
               for day, n in impressions_by_day.items()}
    limit = START_SECONDS + sum(per_day.values())
    return {
        "dagster/max_runtime": str(limit),
        "news_ai/max_runtime_basis": (
            f"{START_SECONDS} s + {SECONDS_PER_100K_IMPRESSIONS} s per 100,000 impressions (at least {MIN_DAY_SECONDS} s a "
            f"day) of {len(per_day)} day(s), {sum(impressions_by_day.values()):,} impressions = {limit} s"
        ),
    }


def _lines(content: str) -> int:
    return int(content.split(":", 1)[0])


def impressions_on(folder: Path, day: dt.date) -> int:
    """The impressions (lines) of `day` in the folder's behaviors files."""
    return sum(_lines(day_contents(split.file("behaviors.tsv")).get(day, "0")) for split in discover_splits(folder))


def _file_states(folder: Path, known: Mapping[str, dict]) -> dict[str, dict]:
    """Each watched file of the folder's splits: split, size, mtime, SHA-256 and, for behaviors,
    each day's content; files whose size and mtime, or else SHA-256, are unchanged keep what is known."""
    states = {}
    for split in discover_splits(folder):
        for name in WATCHED:
            path = split.path / name
            if name == "entity_embedding.vec" and not path.exists() and not path.is_symlink():
                continue  # optional: entity features report it missing (a dangling link fails below)
            path = split.file(name)
            stat, before = path.stat(), known.get(str(path), {})
            state = {"split": split.split, "kind": name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
            if before and (before["size"], before["mtime_ns"]) == (stat.st_size, stat.st_mtime_ns):
                states[str(path)] = before
                continue
            state["sha256"] = sha256_of(path)
            if before.get("sha256") == state["sha256"]:
                states[str(path)] = {**before, **state}
                continue
            if name == "behaviors.tsv":
                state["days"] = {day.isoformat(): content for day, content in day_contents(path).items()}
            states[str(path)] = state
    return states


def _behaviors_requests(context: dg.SensorEvaluationContext, known: Mapping[str, dict], states: Mapping[str, dict],
                        changed: list[str]) -> tuple[list[dg.RunRequest], list[str]]:
    """bronze/behaviors runs for the days the changed behaviors files touch whose version the files
    no longer give; and the touched days outside the partitions."""
    behaviors = {path: state for path, state in states.items() if state["kind"] == "behaviors.tsv"}
    changed = [path for path in changed if path in behaviors]
    touched = sorted({day for path in changed for day in {*behaviors[path]["days"], *known.get(path, {}).get("days", {})}})
    outside = [day for day in touched if not daily_partitions.has_partition_key(day)]
    if outside:
        context.log.warning(f"{len(outside)} changed day(s) lie outside the partitions ({SETTINGS.start_date} .. "
                            f"{SETTINGS.end_date}): {', '.join(outside)}; set NEWS_AI_START_DATE / NEWS_AI_END_DATE to "
                            "include them")
    days = [dt.date.fromisoformat(day) for day in touched if day not in outside]
    stored, requests = latest_data_versions(context.instance, BEHAVIORS, days), []
    for day, key in ((day, day.isoformat()) for day in days):
        contents = {state["split"]: state["days"][key] for state in behaviors.values() if key in state["days"]}
        version = behaviors_day_version(contents)
        if version == stored[day]:
            continue
        files = [path for path in changed  # those whose lines of the day changed
                 if behaviors[path]["days"].get(key) != known.get(path, {}).get("days", {}).get(key)]
        context.log.info(f"{day}: its lines in {', '.join(files)} changed (bronze/behaviors version {stored[day]} -> "
                         f"{version}): requesting bronze/behaviors[{day}]")
        requests.append(dg.RunRequest(
            run_key=f"bronze/behaviors {day} {version}", partition_key=key, asset_selection=[BEHAVIORS],
            tags={"news_ai/changed_files": ", ".join(files), **run_time_limit({day: sum(map(_lines, contents.values()))})},
        ))
    return requests, outside


def _undated_requests(context: dg.SensorEvaluationContext, known: Mapping[str, dict], states: Mapping[str, dict],
                      changed: list[str]) -> list[dg.RunRequest]:
    """A run over every partition for changed news.tsv or entity_embedding.vec files, whose lines carry no day."""
    every_day, requests = daily_partitions.get_partition_keys(), []
    for kind in ("news.tsv", "entity_embedding.vec"):
        files = [path for path in changed if states[path]["kind"] == kind]
        if not files:
            continue
        if not known:  # the first tick: the files as they are are the baseline
            context.log.info(f"first tick: watching {', '.join(files)} for changes from now on")
            continue
        asset = WATCHED[kind]
        impressions = {dt.date.fromisoformat(day): sum(_lines(s["days"].get(day, "0")) for s in states.values() if "days" in s)
                       for day in every_day}
        context.log.info(f"{', '.join(files)} changed: requesting {asset.to_user_string()} for every day "
                         f"({every_day[0]} .. {every_day[-1]}); days whose articles did not change keep their versions")
        requests.append(dg.RunRequest(
            run_key=f"{asset.to_user_string()} {' '.join(states[f]['sha256'] for f in files)}", asset_selection=[asset],
            tags={"news_ai/changed_files": ", ".join(files), "dagster/asset_partition_range_start": every_day[0],
                  "dagster/asset_partition_range_end": every_day[-1], **run_time_limit(impressions)},
        ))
    return requests


@dg.sensor(
    name="mind_files_sensor",
    target=[BEHAVIORS, NEWS, ENTITY_FEATURES],
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Turns a new or changed MIND file into runs for the days its lines changed (README: Keeping current).",
)
def mind_files_sensor(context: dg.SensorEvaluationContext, mind: MindSource):
    folder = mind.watched_folder()
    if folder is None:
        return dg.SkipReason("NEWS_AI_MIND_DIR is not set and the sample has not been generated yet: nothing to watch")
    known = json.loads(context.cursor) if context.cursor else {}
    states = _file_states(folder, known)
    if gone := sorted(set(known) - set(states)):
        raise dg.Failure(f"{', '.join(gone)} no longer exist(s) under {folder}; bronze/behaviors refuses to replace those "
                         "days with nothing. Restore the file(s), or see README: Keeping current.")
    changed = sorted(path for path, state in states.items() if known.get(path, {}).get("sha256") != state["sha256"])
    if not changed:
        return dg.SensorResult(skip_reason=dg.SkipReason(f"no MIND file under {folder} changed"), cursor=json.dumps(states))
    requests, outside = _behaviors_requests(context, known, states, changed)
    requests += _undated_requests(context, known, states, changed)
    if requests:
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(states))
    return dg.SensorResult(cursor=json.dumps(states), skip_reason=dg.SkipReason(
        f"{', '.join(changed)}: every day of the partitions already has the version these files give"
        + (f"; outside the partitions: {', '.join(outside)}" if outside else "")))


carry_changes_downstream = dg.AutomationConditionSensorDefinition(
    "carry_changes_downstream",
    target=dg.AssetSelection.all() - dg.AssetSelection.assets(BEHAVIORS) - dg.AssetSelection.groups("gold"),
    minimum_interval_seconds=30,
    description="Requests the partitions that read a partition with a new data version (README: Keeping current).",
)
