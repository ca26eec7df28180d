from aiaas.cli.main import main

main()
