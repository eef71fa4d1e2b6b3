# A TorchScript operator exported from PyTorch (examples/export_torchscript.py)
# loads and runs through jko eval.
execute_process(COMMAND "${PYTHON}" "${SOURCE}/examples/export_torchscript.py" --out "${WORK}/script.pt"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "exporting the TorchScript example failed (${rc}): ${err}")
endif()
execute_process(COMMAND "${JKO}" eval --case barenblatt-step --solver learned --operator "${WORK}/script.pt" --grid 32
                        --json --threads 2
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the TorchScript operator did not run (${rc}): ${err}")
endif()
string(JSON drift GET "${out}" mass_drift_max)
string(JSON error GET "${out}" step_error_final)
# The exported module is the untrained operator: it moves mass the right way
# (better than staying put, whose step error is 1) without being exact.
if(drift GREATER 1e-10 OR NOT error LESS 1)
  message(FATAL_ERROR "TorchScript operator: mass drift ${drift}, step error ${error}")
endif()
