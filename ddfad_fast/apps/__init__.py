"""What the package does with the stages below it: the whole pipeline (:mod:`~ddfad_fast.apps.run`), feature
sets back to audio files (:mod:`~ddfad_fast.apps.export`), reports (:mod:`~ddfad_fast.apps.report`,
:mod:`~ddfad_fast.apps.report_html`), continual learning (:mod:`~ddfad_fast.apps.continual`) and
architecture search (:mod:`~ddfad_fast.apps.nas`)."""
