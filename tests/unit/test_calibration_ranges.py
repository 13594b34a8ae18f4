"""Every calibration method's ranges from one histogram pass (edgec/quantize/calibrate.py), and the rule
that picks among them (quantize/choose.py)."""
from __future__ import annotations

import numpy as np

from edgec.package.harness.manifest import SchemeCandidate
from edgec.quantize.calibrate import Histogram, _range
from edgec.quantize.choose import agreement, most_faithful, sqnr


def _relu_with_outliers() -> list[np.ndarray]:
    """ReLU-like activations: about a third exact zeros, a long-tailed body, one outlier at 40."""
    rng = np.random.default_rng(0)
    runs = []
    for run in range(8):
        body = np.maximum(rng.normal(0.5, 1.0, 20_000), 0) * rng.exponential(1.0, 20_000)
        body[0] = 40.0 if run == 0 else body[0]
        runs.append(body.astype(np.float32))
    return runs


def test_methods_read_one_histogram():
    histogram = Histogram()
    for run in _relu_with_outliers():
        histogram.add(run, run.min(), run.max())
    counts, edges, low, high, mean_low, mean_high = snapshot = histogram.snapshot()
    assert counts.sum() == 8 * 20_000 and counts.size == edges.size - 1 and edges[0] == -edges[-1]
    assert (low, high) == (0.0, 40.0) and _range("minmax", snapshot) == (0.0, 40.0)
    p_low, p_high = _range("percentile", snapshot)
    e_low, e_high = _range("entropy", snapshot)
    assert p_low == e_low == 0.0  # never below the seen minimum
    assert 5.0 < p_high < 40.0  # one value in 160,000 lies past the 99.999th percentile of |x|
    assert 2.0 < e_high < p_high  # the KL search clips the long tail further
    runs = _relu_with_outliers()
    m_low, m_high = _range("mean-minmax", snapshot)  # NNCF's default: each run's min and max, averaged
    assert m_low == 0.0 and np.isclose(m_high, np.mean([run.max() for run in runs]), rtol=1e-6)
    assert e_high < m_high < 40.0 / 8 + max(run.max() for run in runs[1:])  # the outlier run moves it an eighth


def test_larger_values_extend_the_histogram_without_rebinning():
    histogram = Histogram()
    histogram.add(np.linspace(-1, 1, 1001, dtype=np.float32), -1.0, 1.0)
    width = histogram.width
    histogram.add(np.array([0.0, 7.5], dtype=np.float32), 0.0, 7.5)
    counts, edges, low, high = histogram.snapshot()[:4]
    assert histogram.width == width and edges[-1] >= 7.5 and counts.sum() == 1003 and (low, high) == (-1.0, 7.5)


def test_most_faithful_breaks_top1_ties_by_sqnr():
    """MobileNetV2's held-back figures: percentile and entropy tie on top-1, entropy has the better SQNR."""
    minmax = SchemeCandidate("minmax", {}, 87.5, 13.4)
    percentile = SchemeCandidate("percentile", {}, 93.75, 15.2)
    entropy = SchemeCandidate("entropy", {}, 93.75, 16.4)
    assert most_faithful([minmax, percentile, entropy])[0] is entropy
    assert most_faithful([minmax, SchemeCandidate("entropy", {}, 81.25, 16.4)])[0] is minmax  # top-1 first
    assert most_faithful([SchemeCandidate("minmax", {}, None, 20.0), SchemeCandidate("entropy", {}, None, 21.0)])[0].name == "entropy"


def test_most_faithful_takes_one_flip_among_few_samples_for_noise():
    """One of four held-back samples flipping is 25 points of top-1, no measure: SQNR decides (fer_emotion's
    held-back figures: bias correction on 75 % / 28.4 dB, off 100 % / 26.2 dB); two flips still count."""
    on, off = SchemeCandidate("on", {}, 75.0, 28.4), SchemeCandidate("off", {}, 100.0, 26.2)
    assert most_faithful([on, off])[0] is off and most_faithful([on, off], judged=4)[0] is on
    assert most_faithful([SchemeCandidate("on", {}, 50.0, 28.4), off], judged=4)[0] is off
    assert most_faithful([SchemeCandidate("on", {}, 87.5, 16.4), SchemeCandidate("off", {}, 93.75, 13.4)],
                         judged=200)[0].name == "off"  # 12 samples of 200 are a measure


def test_top1_agreement_is_taken_on_the_output_that_is_class_scores():
    """The candidates' top-1 agreement reads the first output the policy calls class scores (logits or
    probabilities), wherever it stands; an embedding's largest dimension is no class (MiniLM's [1, 384]
    embedding was ranked by it), nor is one sigmoid score; integer outputs stay out of the SQNR."""
    rng = np.random.default_rng(0)
    embedding, logits = rng.normal(size=(8, 1, 384)), rng.normal(size=(8, 1, 10))
    shuffled = embedding[:, :, ::-1]  # every embedding's largest dimension moved
    flipped = logits.copy()
    flipped[0, 0] = -flipped[0, 0]  # one of eight runs' class changed
    ids = np.arange(8).reshape(8, 1)
    reference, outputs = [embedding, ids, logits], [shuffled, ids + 1, flipped]
    agrees = agreement(reference, outputs, ["embeddings", "integers", "logits"])
    assert agrees.tolist() == [False] + [True] * 7
    assert agreement(reference, outputs, ["embeddings", "integers", "tensor"]) is None
    assert agreement([logits[..., :1]], [logits[..., :1]], ["probabilities"]) is None
    assert sqnr(reference, outputs) == sqnr([embedding, logits], [shuffled, flipped])
