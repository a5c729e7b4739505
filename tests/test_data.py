"""Data loading: presets from ../shared/data, every file kind, field mapping, templates, limits,
splits and the error messages."""

import csv
import json

import pytest

from grpokit.config import DataConfig
from grpokit.data.records import (
    DataError,
    example_prompt_ids,
    load_eval_examples,
    load_examples,
    load_split,
    render_template,
)
from grpokit.data.order import ShuffledOrder
from grpokit.data.sources import read_hub

from .conftest import DATA


class CharTokenizer:
    """One id per character of 'role:content|' per message; remembers what it was given."""

    def __init__(self):
        self.calls = []

    def apply_chat_template(self, messages, add_generation_prompt=True, tokenize=True):
        self.calls.append(messages)
        return [ord(c) for m in messages for c in f"{m['role']}:{m['content']}|"]


def cfg(**kw) -> DataConfig:
    return DataConfig(data_dir=str(DATA), **kw)


ROWS = [
    {"question": "What is 2+3?", "answer": "5", "level": 1},
    {"question": "What is 10*4?", "answer": "40", "level": 2},
    {"question": "Half of 9?", "answer": "4.5", "level": 2},
]


# ----------------------------------------------------------------------------- presets


def test_gsm8k_preset_counts_rows_and_bare_answers():
    train = load_split(cfg(source="gsm8k"), "train")
    test = load_split(cfg(source="gsm8k"), "test")
    assert (len(train), len(test)) == (7473, 1319)
    assert train[0]["prompt"].startswith("Natalia sold clips to 48 of her friends in April")
    assert train[0]["answer"] == "72" and train[0]["solution"].endswith("#### 72")
    assert test[0]["prompt"].startswith("Janet’s ducks lay 16 eggs") and test[0]["answer"] == "18"
    with_comma = [ex for ex in test if ex["solution"].endswith("#### 2,125")]
    assert [ex["answer"] for ex in with_comma] == ["2125"]


def test_gsm8k_training_set_is_train_and_eval_is_the_first_rows_of_test():
    train, evals = load_examples(cfg(source="gsm8k", eval_size=50), tokenizer=None)
    assert len(train) == 7473 and len(evals) == 50
    assert evals[0]["answer"] == "18"  # test row 1, file order
    assert len(load_examples(cfg(source="gsm8k", eval_size=0), None)[1]) == 1319  # 0 = all of test


def test_math500_preset_keeps_latex_answer_subject_and_level():
    rows = load_eval_examples(cfg(source="math500"))
    assert len(rows) == 500
    first = rows[0]
    assert first["prompt"].startswith("Convert the point $(0,3)$ in rectangular coordinates")
    assert first["answer"] == r"\left( 3, \frac{\pi}{2} \right)"
    assert (first["subject"], first["level"]) == ("Precalculus", 2)
    assert sum(r["subject"] == "Algebra" for r in rows) == 124


def test_humaneval_preset_has_stub_tests_and_entry_point_but_no_answer():
    rows = load_eval_examples(cfg(source="humaneval"))
    assert len(rows) == 164
    first = rows[0]
    assert first["task_id"] == "HumanEval/0" and first["entry_point"] == "has_close_elements"
    assert first["prompt"].startswith("from typing import List") and "def check(candidate)" in first["test"]
    assert "answer" not in first


def test_arithmetic_preset_is_the_demo_split():
    from grpokit.tasks.arithmetic import ArithmeticSpec, split_problems

    train, evals = load_examples(DataConfig(), tokenizer=None)
    expected = split_problems(ArithmeticSpec())
    assert [e["prompt"] for e in evals] == [e["prompt"] for e in expected["eval"]]
    assert [e["answer"] for e in train[:100]] == [e["answer"] for e in expected["train"][:100]]
    assert len(load_eval_examples(DataConfig())) == 200


def test_preset_with_one_split_holds_out_a_seeded_shuffle():
    train, evals = load_examples(cfg(source="math500", eval_size=100, seed=3), None)
    assert (len(train), len(evals)) == (400, 100)
    assert not {e["unique_id"] for e in train} & {e["unique_id"] for e in evals}
    again = load_examples(cfg(source="math500", eval_size=100, seed=3), None)[1]
    other = load_examples(cfg(source="math500", eval_size=100, seed=4), None)[1]
    assert [e["unique_id"] for e in again] == [e["unique_id"] for e in evals]
    assert [e["unique_id"] for e in other] != [e["unique_id"] for e in evals]
    in_order = load_examples(cfg(source="math500", eval_size=100, shuffle=False), None)[1]
    assert in_order[0]["answer"] == r"\left( 3, \frac{\pi}{2} \right)"


# ----------------------------------------------------------------------------- file kinds


def write_all_kinds(tmp_path, rows):
    paths = {}
    paths["jsonl"] = tmp_path / "d.jsonl"
    paths["jsonl"].write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")  # a trailing blank line is fine
    paths["json"] = tmp_path / "d.json"
    paths["json"].write_text(json.dumps({"data": rows}))
    paths["csv"] = tmp_path / "d.csv"
    with open(paths["csv"], "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths["parquet"] = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(rows), paths["parquet"])
    return paths


@pytest.mark.parametrize("kind", ["jsonl", "json", "csv", "parquet"])
def test_every_file_kind_gives_the_same_records(tmp_path, kind):
    path = write_all_kinds(tmp_path, ROWS)[kind]
    train, evals = load_examples(DataConfig(source=str(path), eval_size=1, shuffle=False), None)
    assert [e["prompt"] for e in evals + train] == [r["question"] for r in ROWS]  # 'question' guessed
    assert [e["answer"] for e in evals + train] == ["5", "40", "4.5"]
    assert str(train[0]["level"]) == "2"  # other columns kept (CSV keeps text)


def test_field_mapping_numbers_as_answers_and_extra_columns(tmp_path):
    path = tmp_path / "custom.jsonl"
    path.write_text("\n".join(json.dumps({"q": f"{i}+1", "gold": i + 1, "src": "x"}) for i in range(4)))
    rows = load_split(DataConfig(source=str(path), prompt_field="q", answer_field="gold"))
    assert [(r["prompt"], r["answer"], r["src"]) for r in rows[:2]] == [("0+1", "1", "x"), ("1+1", "2", "x")]


def test_tests_and_entry_point_columns_map_to_the_code_reward_keys(tmp_path):
    path = tmp_path / "code.jsonl"
    path.write_text(json.dumps({"task": "def f(x):", "checks": "def check(c): assert c(1) == 2",
                                "fn": "f"}) + "\n")
    (row,) = load_split(DataConfig(source=str(path), prompt_field="task", tests_field="checks",
                                   entry_point_field="fn"))
    assert (row["test"], row["entry_point"], row["prompt"]) == ("def check(c): assert c(1) == 2", "f", "def f(x):")


def test_datasets_save_to_disk_folder_and_dataset_dict_splits(tmp_path):
    import datasets

    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "one"))
    assert [r["answer"] for r in load_split(DataConfig(source=str(tmp_path / "one")))] == ["5", "40", "4.5"]
    both = datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS[:2]),
                                 "test": datasets.Dataset.from_list(ROWS[2:])})
    both.save_to_disk(str(tmp_path / "two"))
    src = str(tmp_path / "two")
    assert len(load_split(DataConfig(source=src))) == 2  # train by default
    assert [r["answer"] for r in load_split(DataConfig(source=src), "test")] == ["4.5"]
    train, evals = load_examples(DataConfig(source=src, eval_split="test"), None)
    assert (len(train), len(evals)) == (2, 1)
    with pytest.raises(DataError, match=r"no split 'dev' \(splits: train, test\)"):
        load_split(DataConfig(source=src), "dev")


def test_hub_loader_reads_a_folder_of_data_files_with_load_dataset(tmp_path):
    """The hub path is datasets.load_dataset; a local folder of split files exercises it offline."""
    folder = tmp_path / "hubish"
    folder.mkdir()
    (folder / "train.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS[:2]))
    (folder / "test.jsonl").write_text(json.dumps(ROWS[2]))
    assert [r["answer"] for r in read_hub(str(folder), split="test")] == ["4.5"]
    rows = load_split(DataConfig(source=f"hub:{folder}"), "train")
    assert [r["prompt"] for r in rows] == ["What is 2+3?", "What is 10*4?"]
    with pytest.raises(DataError, match="cannot load dataset"):
        read_hub(str(folder), split="nope")


# ----------------------------------------------------------------------------- prompts


def test_system_prompt_and_template_reach_the_chat_template(tmp_path):
    path = write_all_kinds(tmp_path, ROWS)["jsonl"]
    rows = load_split(DataConfig(source=str(path), system_prompt="Be brief.",
                                 prompt_template="[{level}] {prompt} Put the answer in \\boxed{}."))
    first = rows[0]
    assert first["prompt"] == "What is 2+3?"  # the problem text stays (code rewards read it)
    assert first["message"] == "[1] What is 2+3? Put the answer in \\boxed{}."
    tok = CharTokenizer()
    ids = example_prompt_ids(tok, first)
    assert tok.calls[0] == [{"role": "system", "content": "Be brief."},
                            {"role": "user", "content": first["message"]}]
    assert example_prompt_ids(tok, first) is ids and len(tok.calls) == 1  # tokenized once


def test_template_leaves_unknown_braces_and_needs_a_placeholder(tmp_path):
    assert render_template("{prompt} {x} \\frac{1}{2}", {"prompt": "p"}) == "p {x} \\frac{1}{2}"
    path = write_all_kinds(tmp_path, ROWS)["jsonl"]
    with pytest.raises(DataError, match="no {prompt}"):
        load_split(DataConfig(source=str(path), prompt_template="Solve it."))


def test_long_prompts_are_dropped_and_counted(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": "x" * n, "answer": "1"}) for n in (1, 5, 9, 3)))
    logged = []
    limit = len("user:|") + 5  # CharTokenizer: prompt length + 6
    rows = load_split(DataConfig(source=str(path), max_prompt_tokens=limit), "", CharTokenizer(), logged.append)
    assert [len(r["prompt"]) for r in rows] == [1, 5, 3]
    assert logged == [f"data: dropped 1 of 4 {path} prompts longer than data.max_prompt_tokens={limit} "
                      "(longest: 15 tokens)"]
    with pytest.raises(DataError, match=r"every one of the 4 .* is longer \(shortest: 7 tokens\)"):
        load_split(DataConfig(source=str(path), max_prompt_tokens=6), "", CharTokenizer(), logged.append)


# ----------------------------------------------------------------------------- errors


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match=f"file not found: {tmp_path / 'nope.jsonl'}"):
        load_split(DataConfig(source=str(tmp_path / "nope.jsonl")))


def test_missing_preset_file_says_how_to_point_at_the_data(tmp_path):
    with pytest.raises(DataError, match="gsm8k/train.jsonl .*data.data_dir"):
        load_split(DataConfig(source="gsm8k", data_dir=str(tmp_path)))


def test_unknown_preset_suggests_the_nearest():
    with pytest.raises(DataError, match="unknown preset 'gsm8'; did you mean 'gsm8k'"):
        load_examples(DataConfig(source="gsm8"), None)
    with pytest.raises(DataError, match="presets: gsm8k, math500, humaneval, arithmetic"):
        load_split(DataConfig(source="zzzzzz"))


def test_missing_column_names_the_columns_that_exist(tmp_path):
    path = write_all_kinds(tmp_path, ROWS)["csv"]
    with pytest.raises(DataError, match="data.answer_field: no column 'gold' .* columns are: question, answer, level"):
        load_split(DataConfig(source=str(path), answer_field="gold"))
    nameless = tmp_path / "n.jsonl"
    nameless.write_text(json.dumps({"text": "hi", "label": 1}))
    with pytest.raises(DataError, match="no prompt column found .* columns: text, label"):
        load_split(DataConfig(source=str(nameless)))


def test_empty_dataset_is_refused(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n")
    with pytest.raises(DataError, match="empty"):
        load_split(DataConfig(source=str(path)))


@pytest.mark.parametrize("lines, message", [
    (['{"prompt": "a"}', '[1, 2]'], "line 2 is a JSON list, expected an object"),
    (['{"prompt": "a"}', '{"prompt": '], "line 2 is not valid JSON"),
    (['{"prompt": "a"}', '{"prompt": "b"}', '{"prompt": 7}'], "row 3: column 'prompt' should be text, got int"),
    (['{"prompt": "a", "answer": "1"}', '{"prompt": "b", "answer": null}'],
     "row 2: column 'answer' should be text or a number, got NoneType"),
    (['{"prompt": "a", "answer": "1"}', '{"answer": "2"}'], "row 2: no column 'prompt'"),
])
def test_rows_of_the_wrong_type_are_named(tmp_path, lines, message):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=message):
        load_split(DataConfig(source=str(path)))


@pytest.mark.parametrize("answer", ['""', '"   "', '"\\n\\t"'])
def test_an_empty_jsonl_answer_is_refused_naming_the_row(tmp_path, answer):
    path = tmp_path / "empty_answer.jsonl"
    path.write_text('{"prompt": "a", "answer": "1"}\n{"prompt": "b", "answer": %s}\n' % answer)
    with pytest.raises(DataError, match="row 2: column 'answer' is empty"):
        load_split(DataConfig(source=str(path)))


def test_an_empty_csv_answer_is_refused_naming_the_row(tmp_path):
    path = tmp_path / "empty_answer.csv"
    path.write_text("question,answer\nWhat is 2+2?,4\nWhat is 1+1?,\n")
    with pytest.raises(DataError, match="row 2: column 'answer' is empty"):
        load_split(DataConfig(source=str(path)))


def test_json_rows_must_be_objects_and_eval_size_must_leave_training_rows(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"prompt": "a"}, "b"]))
    with pytest.raises(DataError, match="row 2 is a JSON str"):
        load_split(DataConfig(source=str(path)))
    good = write_all_kinds(tmp_path, ROWS)["jsonl"]
    with pytest.raises(DataError, match="eval_size=3 holds out all 3 examples"):
        load_examples(DataConfig(source=str(good), eval_size=3), None)


def test_shuffled_order_ignores_rewards_and_resumes():
    a = ShuffledOrder(5, seed=1)
    first = a.next_indices(7)
    a.record(first[:2], [[1.0, 0.0], [0.0, 0.0]])
    b = ShuffledOrder(5, seed=1)
    b.load_state_dict(a.state_dict())
    assert sorted(first[:5]) == list(range(5)) and a.next_indices(6) == b.next_indices(6)
