"""The distillation driver, built on the loss library (``ddtime``); nothing here is imported by it.

One subpackage or module per job:

* :mod:`.data`: forecasting datasets (registry, CSV reading, protocols, windows);
* :mod:`.models`: forecasting backbones and their flat-parameter calls;
* :mod:`.training`: training one model, several in lockstep, SAM;
* :mod:`.experts`: the expert store, training experts into it, the cache policy;
* :mod:`.distill`: the distillation loop, synthetic sets, base methods, CondTSF's update, DDTime's terms;
* :mod:`.evaluation`: fresh students on a synthetic set and the references beside them;
* :mod:`.pipeline`: one run end to end (experts, distillation, evaluation, files);
* :mod:`.grid`: the methods x variants comparison and its tables;
* :mod:`.presets`: published settings by name;
* :mod:`.classification`: DM and TGDD on labelled images or vectors;
* :mod:`.commands`: the ``ddtime`` command line (argument handling only);
* :mod:`.atomic`: atomic file writes.
"""
