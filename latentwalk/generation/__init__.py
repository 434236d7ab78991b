"""The parts of ``latentwalk generate`` that :mod:`latentwalk.pipeline` (the run: setup, output folder, merge) puts
together: its configuration and TOML run file (:mod:`.config`), the work items (:mod:`.items`), the torchrun
process group (:mod:`.world`) and the dataset card (:mod:`.card`)."""
