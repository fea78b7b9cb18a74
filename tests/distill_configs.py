"""``distill_config(**flat)``: a DistillConfig from the flat record of ``DistillConfig.to_dict()``
(``ddtime=True, alpha=..., condtsf=True, condtsf_beta=...``; ``ddtime`` is the record's flag for
``ddtime_terms``), the shorthand of the driver tests."""
from ddtime.driver.distill import CondTSFUpdate, DDTimeTerms, DistillConfig

TERMS = ("alpha", "lambda_val", "lambda_is", "tau", "student_side", "loss_impl")
UPDATE = ("condtsf_beta", "condtsf_gap", "condtsf_series_write")


def distill_config(**flat) -> DistillConfig:
    terms = {k: flat.pop(k) for k in TERMS if k in flat}
    update = {k[len("condtsf_"):]: flat.pop(k) for k in UPDATE if k in flat}
    ddtime, condtsf = flat.pop("ddtime", False), flat.pop("condtsf", False)
    return DistillConfig(**flat, ddtime_terms=DDTimeTerms(**terms) if ddtime else None,
                         condtsf=CondTSFUpdate(**update) if condtsf else None)
