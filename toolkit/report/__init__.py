"""Listening pages and paired comparisons of systems, from `dcase9 score` reports (`dcase9 report`).

Layers: `inputs` reads and cross-checks score reports; `compare` holds the statistics (paired
bootstrap, win/tie/loss); `media` writes or locates the audio and draws spectrograms; `page`
renders the HTML; `build` puts them together.

The page folder:
    index.html               the page (data embedded as JSON); opens from the file system
    assets/report.js, .css   its script and style
    audio/mixture/, reference/   validation mixtures and references (16-bit WAV)
    audio/system-N/          the estimates, only with --self-contained (else played in place)
    spectrograms/<player>/<id>.png   for the first rows the page shows
    comparison.json, comparison.png  paired comparison of every pair of systems
"""

from dcase9.report.build import ReportResult, build_report
from dcase9.report.compare import compare_pair, compare_systems

__all__ = ["ReportResult", "build_report", "compare_pair", "compare_systems"]
