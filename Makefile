# `sam build` (the template's BuildMethod: makefile, built in source as samconfig.toml says):
# one package holding the function for both architectures.
build-ReplicatorFunction:
	scripts/package-lambda.sh "$(ARTIFACTS_DIR)"
