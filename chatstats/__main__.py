from chatstats.cli import main

raise SystemExit(main())
