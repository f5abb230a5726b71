import Glibc
import NVFP4CLI

exit(CommandLineTool.main(CommandLine.arguments))
