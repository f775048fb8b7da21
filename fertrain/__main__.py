from fertrain.cli import main

main()
