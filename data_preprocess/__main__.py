"""``python -m data_preprocess``: the same CLI as the ``actguide-preprocess`` console script."""

from data_preprocess.cli import main

raise SystemExit(main())
