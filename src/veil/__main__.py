from veil.cli import main

main()
