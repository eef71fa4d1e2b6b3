# The step's symmetries from the command line: the bundled porous-medium
# operator (tau 0.005, conditioned on D and m) serves the Barenblatt flow at
# tau 0.0025 by stepping D 0.5 at its own tau, says so, and stays within 3% of
# the exact JKO chain; `jko compare` runs a related problem (tau 0.01, D 0.5) and reports
# it; a Fokker-Planck operator asked for another D alone is refused with the
# groups it serves; an operator conditioned on D and a serves other time steps;
# the aggregation-diffusion operator, conditioned on D and A, serves other
# attractions and masses.
set(porous "${SOURCE}/data/operators/porous-medium.jko")

function(expect_in text part what)
  string(FIND "${text}" "${part}" where)
  if(where EQUAL -1)
    message(FATAL_ERROR "${what}: '${part}' missing from: ${text}")
  endif()
endfunction()

execute_process(COMMAND "${JKO}" eval --case barenblatt-flow --solver learned --operator "${porous}" --tau 0.0025
                        --steps 5 --json --threads 2
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the learned Barenblatt flow at tau 0.0025 failed (${rc}): ${err}")
endif()
expect_in("${err}" "m=2, D=0.5), inside its conditioned ranges, tau = 0.005" "the symmetry's note")
expect_in("${err}" "exact, by the step's symmetries" "the symmetry's note")
string(JSON tau GET "${out}" tau)
string(JSON error GET "${out}" rel_l1_jko_final)
if(NOT tau EQUAL 0.0025 OR error GREATER 0.03)
  message(FATAL_ERROR "tau ${tau}, error against the exact JKO chain ${error} (at most 0.03): ${out}")
endif()
message(STATUS "Barenblatt flow at tau 0.0025 through the symmetry: ${error} from the exact JKO chain")

execute_process(COMMAND "${JKO}" compare --operator "${porous}" --suite held-out --tau 0.01 --D 0.5 --densities 1
                        --steps 2 --grid 32 --threads 2
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "jko compare at tau 0.01, D 0.5 failed (${rc}): ${err}")
endif()
string(JSON tau GET "${out}" tau)
string(JSON D GET "${out}" energy internal D)
string(JSON mean GET "${out}" rel_l1_mean)
if(NOT tau EQUAL 0.01 OR NOT D EQUAL 0.5 OR mean GREATER 0.05)
  message(FATAL_ERROR "compare should run tau 0.01, D 0.5 within 5%: ${out}")
endif()
# Each held-out density says what it was: its kind, mass and the range warnings.
string(JSON kind GET "${out}" held_out_densities 0 kind)
string(JSON densityMass GET "${out}" held_out_densities 0 mass)
string(JSON densityError GET "${out}" held_out_densities 0 rel_l1_mean)
if(NOT kind STREQUAL "gaussian-mixture" OR NOT densityMass GREATER 0 OR NOT densityError EQUAL mean)
  message(FATAL_ERROR "the held-out density should be described (gaussian-mixture, its mass, its mean error): ${out}")
endif()

# Auto on the held-out suite: every frame certified, refined where it fails, within 1% of the reference.
execute_process(COMMAND "${JKO}" compare --operator "${porous}" --suite held-out --solver auto --densities 1
                        --steps 2 --grid 32 --threads 2
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "jko compare --solver auto failed (${rc}): ${err}")
endif()
string(JSON solver GET "${out}" solver)
string(JSON frames GET "${out}" refinement frames)
string(JSON autoMean GET "${out}" rel_l1_mean)
if(NOT solver STREQUAL "auto" OR NOT frames EQUAL 2 OR autoMean GREATER 0.01)
  message(FATAL_ERROR "compare --solver auto should certify 2 frames within 1% of the reference: ${out}")
endif()
# The time against the reference solver's (the Auto cost the reliability gates are about).
string(JSON solverSeconds GET "${out}" solver_seconds)
string(JSON referenceSeconds GET "${out}" reference_seconds)
string(JSON ratio GET "${out}" solver_over_reference_time)
if(NOT solverSeconds GREATER 0 OR NOT referenceSeconds GREATER 0 OR NOT ratio GREATER 0)
  message(FATAL_ERROR "compare should time the solver and the reference solver: ${out}")
endif()
message(STATUS "Auto on a held-out density: ${autoMean} from the reference solver, in ${ratio} of its time")

# The bundled Fokker-Planck operator is conditioned on D in [0.05, 0.5] and
# the potential's strength in [10, 100]: D 0.05 alone is served, D 1 is not.
execute_process(COMMAND "${JKO}" compare --operator "${SOURCE}/data/operators/fokker-planck.jko" --suite held-out
                        --D 0.05 --densities 1 --steps 1 --grid 32 --threads 2
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the bundled Fokker-Planck operator should serve D 0.05 (${rc}): ${err}")
endif()
execute_process(COMMAND "${JKO}" compare --operator "${SOURCE}/data/operators/fokker-planck.jko" --suite held-out
                        --D 1 --densities 1 --steps 1 --grid 32 --threads 2
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(rc EQUAL 0)
  message(FATAL_ERROR "the bundled Fokker-Planck operator asked for D 1 should be refused: ${out}")
endif()
expect_in("${err}" "no symmetry of the step relates" "the refusal")
expect_in("${err}" "D: 1 at the operator's tau, outside its range [0.05, 0.5]" "the refusal")
expect_in("${err}" "tau D in [0.00025, 0.0025]" "the groups served")
# jko rollout steps the energy the options give (--D alone over the
# operator's), never silently the operator's own.
execute_process(COMMAND "${JKO}" rollout --operator "${SOURCE}/data/operators/fokker-planck.jko" --generate bumps
                        --seed 1 --grid 24 --steps 1 --D 0.05 --potential-strength 50 --json --threads 2
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
string(JSON stepped ERROR_VARIABLE missing GET "${out}" energy)
if(NOT rc EQUAL 0 OR missing OR NOT stepped MATCHES "D=0.05; quadratic potential a=50")
  message(FATAL_ERROR "rollout with --D 0.05 --potential-strength 50 should step that energy: ${err} ${out}")
endif()

# An operator conditioned on D and the potential's strength (a tiny one,
# trained here in seconds) serves the Ornstein-Uhlenbeck step at another
# time step, which moves both, and refuses one whose D falls outside.
file(MAKE_DIRECTORY "${WORK}")
set(conditioned "${WORK}/conditioned.jko")
execute_process(COMMAND "${JKO}" train --energy fokker-planck --grid 16 --rounds 1 --epochs 2 --generated 8
                        --validation 5 --horizon 2 --width 8 --modes 6 --layers 2 --hidden 16
                        --condition-D 0.05,0.5 --condition-potential-strength 10,100 --threads 2 --quiet
                        --out "${conditioned}"
                ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the conditioned training failed (${rc}): ${err}")
endif()
execute_process(COMMAND "${JKO}" eval --case ou-step --solver learned --operator "${conditioned}" --tau 0.01
                        --grid 16 --json --threads 2
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the conditioned operator should serve the OU step at tau 0.01 (${rc}): ${err}")
endif()
expect_in("${err}" "D=0.2; quadratic potential a=40), inside its conditioned ranges" "the mapping")
execute_process(COMMAND "${JKO}" eval --case ou-step --solver learned --operator "${conditioned}" --tau 0.05
                        --grid 16 --threads 2
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(rc EQUAL 0)
  message(FATAL_ERROR "tau 0.05 puts D at 1, outside the conditioned range, and should be refused: ${out}")
endif()
expect_in("${err}" "outside its range [0.05, 0.5]" "the refusal")

# The bundled aggregation-diffusion operator is conditioned on D in [0.05,
# 0.5] and the attraction in [5, 50]: the interaction step at D 0.05, A 5 is
# its own step; a density of mass 10 at A 2 is stepped as c rho with the
# attraction taking up the density's scale (c = 0.15: c M the largest
# trained mass, A / c = 13.3); A 500 at mass 1 is stepped at A 50 (c = 10),
# with the mass named as outside the trained ones; D 1 is refused.
set(interaction "${SOURCE}/data/operators/aggregation-diffusion.jko")
execute_process(COMMAND "${JKO}" eval --case interaction-step --D 0.05 --attraction 5 --solver learned
                        --operator "${interaction}" --grid 32 --json --threads 2
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the aggregation-diffusion operator should serve D 0.05, A 5 (${rc}): ${err}")
endif()
expect_in("${err}" "D=0.05; quadratic interaction c=5) (inside the ranges it was trained on)" "the note")
execute_process(COMMAND "${JKO}" rollout --operator "${interaction}" --generate bumps --seed 1 --mass 10 --grid 32
                        --steps 1 --attraction 2 --json --threads 2
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "mass 10 at attraction 2 should be served (${rc}): ${err}")
endif()
expect_in("${err}" "the attraction, conditioned on, takes up the density's scale" "the symmetry's note")
expect_in("${err}" "quadratic interaction c=13.3" "the operator's attraction")
execute_process(COMMAND "${JKO}" eval --case interaction-step --D 0.1 --attraction 500 --solver learned
                        --operator "${interaction}" --grid 32 --threads 2
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "attraction 500 should be served at the top of the range, with a warning (${rc}): ${err}")
endif()
expect_in("${err}" "quadratic interaction c=50), inside its conditioned ranges" "the operator's attraction")
expect_in("${err}" "outside the range the operator was trained on" "the mass warning")
# ... and what would be served: A 5-50 at the masses 0.509-1.5 of the
# file, so A 2.55-75 at mass 1, or masses 0.00509-0.15 at A 500.
expect_in("${err}" "serves this density for Attraction in [2.55, 75] (now 500)" "the attractions served")
expect_in("${err}" "densities of mass in [0.00509, 0.15] (now 1)" "the masses served")
execute_process(COMMAND "${JKO}" eval --case interaction-step --D 1 --attraction 20 --solver learned
                        --operator "${interaction}" --grid 32 --threads 2
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(rc EQUAL 0)
  message(FATAL_ERROR "D 1 should be refused: ${out}")
endif()
expect_in("${err}" "outside its range [0.05, 0.5]" "the refusal")
expect_in("${err}" "tau A in [0.025, 0.25] at the trained masses" "the groups served")
