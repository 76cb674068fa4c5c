from dcase9.cli import main

main()
