from podnet.cli.main import main

main()
