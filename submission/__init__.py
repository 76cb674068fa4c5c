"""DCASE submission packaging and checks: `dcase9 package` and `dcase9 package --check`.

    from dcase9.submission import build_package, check_package
    result = build_package("submission.yaml", "Smith_UNI_task9.zip")   # refuses on any error
    report = check_package("Smith_UNI_task9.zip", data={"eval-synth": "...", "eval-real": "..."})
    for finding in report.findings: print(finding)

The task's rules come from a profile (submission/profiles/dcase2024_task9.yaml by default).
"""

from dcase9.submission.check import CheckReport, check_package
from dcase9.submission.config import SubmissionConfig, load_submission_config
from dcase9.submission.findings import CODES, Finding
from dcase9.submission.meta import ParameterCount, count_checkpoint_parameters, count_parameters
from dcase9.submission.package import PackageResult, SystemSummary, build_package
from dcase9.submission.profile import Profile, load_profile

__all__ = ["CODES", "CheckReport", "Finding", "PackageResult", "ParameterCount", "Profile", "SubmissionConfig",
           "SystemSummary", "build_package", "check_package", "count_checkpoint_parameters", "count_parameters",
           "load_profile", "load_submission_config"]
