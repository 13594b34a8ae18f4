from edgec.cli import main

main(prog_name="edgec")
