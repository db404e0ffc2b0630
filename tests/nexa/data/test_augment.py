import pytest

from nexa.data.augment import from_generator, from_teacher, prompts_for


class EchoTeacher:
    """A real (trivial) implementation of the Teacher protocol: answers with the prompt's last number."""

    name = "echo"

    def __init__(self, blank_every=0):
        self.blank_every = blank_every
        self.calls = 0

    def complete(self, prompts):
        self.calls += 1
        return ["" if self.blank_every and i % self.blank_every == 0 else p.rstrip("=)").split(",")[-1]
                for i, p in enumerate(prompts)]


def test_teacher_path_builds_rows_and_keeps_empty_answers_as_rejected():
    prompts = prompts_for("reasoning", 10, seed=1, exclude=set())
    result = from_teacher(EchoTeacher(blank_every=5), prompts, "reasoning", batch_size=4)
    assert len(result.rows) + len(result.rejected) == 10 and len(result.rejected) == 3
    assert result.rows[0]["domain"] == "teacher:echo" and result.rows[0]["capability"] == "reasoning"


def test_teacher_with_wrong_reply_length_or_shape_is_an_error():
    class Short(EchoTeacher):
        def complete(self, prompts):
            return ["1"]

    with pytest.raises(ValueError, match="returned 1 completions for 2 prompts"):
        from_teacher(Short(), ["a", "b"], "reasoning")
    with pytest.raises(TypeError, match="not a teacher"):
        from_teacher(object(), ["a"], "reasoning")


def test_generator_path_excludes_existing_prompts():
    existing = set(prompts_for("science", 20, seed=1, exclude=set()))
    rows = from_generator("science", 20, seed=1, exclude=existing).rows
    assert len(rows) == 20 and not existing & {r["prompt"] for r in rows}
    with pytest.raises(ValueError, match="built-in capabilities"):
        from_generator("poetry", 1, 1, set())
