from dermcli.cli import main

main()
