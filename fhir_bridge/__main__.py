from fhir_bridge.cli import main

main()
