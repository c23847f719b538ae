"""The onboarding pipeline's named steps, run one at a time against the fake oracle client
and the instantaneous fake measurement of ``test_onboard``: the state after each step."""

from __future__ import annotations

import dataclasses
import inspect
import logging

import numpy as np
import pytest

from client_sdk.measure.onboard import (
    Onboarding,
    OnboardReport,
    OnboardSettings,
    format_report,
    onboard,
)
from client_sdk.measure.onboard_report import judge
from client_sdk.spaces import get_space
from tests.unit.test_onboard import FakeClient, fake_measure, true_ms


def test_steps_one_by_one(caplog: pytest.LogCaptureFixture) -> None:
    client = FakeClient()
    measured: list[str] = []

    def measure(space, genes, harness, progress, desc):
        measured.append(desc)
        return fake_measure(space, genes, harness, progress, desc)

    lines: list[str] = []
    settings = OnboardSettings(
        "cpu1",
        "nasbench201",
        samples=5,
        threads=1,
        validate=8,
        seed=3,
        retest=6,
        target_spearman=0.95,
        round_size=4,
        progress=False,
    )
    pipe = Onboarding(client, settings, measure_fn=measure, log=lines.append)
    st = pipe.state
    sp = get_space("nasbench201")
    assert pipe.next_step == "suggest"  # the steps' order: each step() below names its own
    assert st.done == [] and client.calls == [] and not measured  # nothing before a step

    with caplog.at_level(logging.DEBUG, logger="client_sdk.measure.onboard_pipeline"):
        assert pipe.step() == "suggest"
    assert any("step 1/8 suggest done" in r.getMessage() for r in caplog.records)
    assert client.calls == [("suggest", "nasbench201", 5, 3)]
    assert st.refs is not None and st.refs.shape == (5, 6)
    assert list(st.timings) == ["suggest_s"]

    assert pipe.step() == "build"
    assert st.retest_genes is not None and len(st.retest_genes) == 6
    assert st.measured is not None and len(st.measured) == 11
    np.testing.assert_array_equal(st.measured[:5], st.refs)
    assert st.contract["unit"] == "ms/inference" and st.contract["threads"] == 1
    assert not measured and len(client.calls) == 1  # building measures nothing

    assert pipe.step() == "measure"
    assert measured == ["references"] and st.first is not None
    np.testing.assert_allclose(st.measured_ms, true_ms(sp, st.measured))
    assert st.retest_rho == pytest.approx(1.0)
    assert lines[-1].startswith("measuring 5 reference architectures of 'nasbench201'")

    assert pipe.step() == "register"
    assert client.calls[-1] == ("register", "cpu1", "nasbench201")
    assert st.n_first == 11 and st.info.num_samples == 11
    assert [p["samples"] for p in st.history] == [11]
    assert lines[-1].startswith("registered nasbench201/cpu1 from 11 archs")

    assert pipe.step() == "adapt"  # 0.91 at 11 samples: 0.95 needs 15, one round of 4
    assert [p["samples"] for p in st.history] == [11, 15]
    assert measured == ["references", "round 2"]
    assert sum(len(g) for g in st.all_genes) == 15
    assert "adaptive_s" in st.timings

    assert pipe.step() == "validate"  # the session check's later pass rides along
    assert measured[-1] == "validation + session check"
    assert st.validation is not None and len(st.validation.genes) == 8
    assert st.later_ms is not None and len(st.later_ms) == 11
    assert client.calls[-1] == ("rank", "nasbench201", 8, ("cpu1",))
    assert st.session is None and st.retest == (pytest.approx(1.0), 8)

    assert pipe.step() == "session check"
    assert len(measured) == 3  # no pass of its own: it rode along with the validation
    assert client.calls[-1] == ("add", "cpu1", "nasbench201", 11)
    assert st.session is not None and st.session.added == 11
    assert st.session.scale == pytest.approx(1.0) and st.report is None

    assert pipe.step() == "report" and pipe.next_step is None
    report = st.report
    assert isinstance(report, OnboardReport)
    assert st.done == list(pipe.STEPS)  # every step, in the order asserted above
    assert report.num_samples == 26 and report.session_added == 11 and report.target_reached
    assert len(report.reference_archs) == 15 and report.validation_spearman is not None
    assert list(report.timings_s)[-1] == "total_s"
    assert "refit on both passes" in format_report(report)
    with pytest.raises(RuntimeError):
        pipe.step()


def test_run_is_onboard_and_optional_steps_are_no_ops() -> None:
    """Without a target, validation or session check, their steps run and do nothing;
    ``run`` gives the report ``onboard`` gives for the same settings."""
    kwargs = dict(samples=4, retest=0, session_check=False, progress=False)
    pipe = Onboarding(
        FakeClient(),
        OnboardSettings("cpu1", "nasbench201", **kwargs),
        measure_fn=fake_measure,
        log=None,
    )
    report = pipe.run()
    assert pipe.state.done == list(pipe.STEPS)
    assert pipe.state.validation is None and pipe.state.session is None
    assert [p["round"] for p in report.progress] == [1]
    client = FakeClient()
    same = onboard(client, "cpu1", "nasbench201", measure_fn=fake_measure, log=None, **kwargs)
    assert [c[0] for c in client.calls] == ["suggest", "register"]
    assert format_report(same).split("timings")[0] == format_report(report).split("timings")[0]


def test_onboard_signature_matches_the_settings() -> None:
    """``onboard``'s keyword defaults are ``OnboardSettings``' (the pipeline's) defaults."""
    params = inspect.signature(onboard).parameters
    fields = {f.name: f.default for f in dataclasses.fields(OnboardSettings)}
    assert set(fields) <= set(params)
    for name, default in fields.items():
        if default is not dataclasses.MISSING:
            assert params[name].default == default, name
    assert set(params) - set(fields) == {"client", "measure_fn", "log"}


def test_a_device_that_changes_between_passes_is_a_measurement_problem() -> None:
    """The later pass ranks the first set differently (its latencies shuffled) while each
    pass agrees with itself: the report's verdict blames the measurement, not the model; the
    same run with a faithful later pass is judged on its validation."""
    from client_sdk.measure.measurement import InterleavedMeasurement

    def shuffled_later_pass(space, genes, harness, progress, desc):
        m = fake_measure(space, genes, harness, progress, desc)
        if desc != "validation + session check":
            return m
        s = m.samples_ms.copy()
        later = np.arange(8, len(s))
        s[later] = s[np.random.default_rng(0).permutation(later)]
        return InterleavedMeasurement(s, m.statistic, m.normalised, m.drift_threshold)

    kwargs = dict(samples=5, threads=1, validate=8, seed=3, retest=10, progress=False)
    bad = Onboarding(FakeClient(), OnboardSettings("cpu1", "nasbench201", **kwargs),
                     measure_fn=shuffled_later_pass, log=None).run()
    assert bad.retest_spearman == pytest.approx(1.0)
    assert bad.session_retest_spearman < 0.9
    assert bad.verdict == "measurement problem"
    assert "changed between the passes" in bad.verdict_reason
    assert "VERDICT     MEASUREMENT PROBLEM" in format_report(bad).upper()
    # far below even the lower ceiling: the model's shortfall, the change named beside it
    worse, why = judge(dataclasses.replace(bad, session_retest_spearman=0.8,
                                           validation_spearman=0.5))
    assert worse == "below ceiling" and "counting the change" in why and "besides" in why
    good = Onboarding(FakeClient(), OnboardSettings("cpu1", "nasbench201", **kwargs),
                      measure_fn=fake_measure, log=None).run()
    assert good.session_retest_spearman == pytest.approx(1.0)
    assert good.verdict in ("ok", "below ceiling")
    assert good.verdict_reason.startswith("the served ranking")
    short = dataclasses.replace(good, validation_spearman=good.ceiling - 0.06)
    assert judge(short)[0] == "below ceiling"
    assert judge(dataclasses.replace(good, validation_spearman=None))[0] == "not validated"
