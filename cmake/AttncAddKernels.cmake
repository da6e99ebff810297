# attnc_add_kernels: compile attn-dialect .mlir files with attnc at build time
# and link the kernels into a static library (docs/cmake.md).
#
#   attnc_add_kernels(<target>
#     SOURCES a.mlir [b.mlir ...]   # relative to the current source dir
#     [TARGETS host]                # code generation targets (default host)
#     [OPTIONS --block-kv=64 ...])  # passed to every attnc command
#
# Each source gets its own attnc command and output directory
# <binary dir>/attnc_kernels/<target>/<stem>/ holding <stem>.o, <stem>.h and
# manifest.json (attnc --linkage=object); the command depends only on that
# source and the attnc binary, so editing one .mlir reruns only its attnc.
# <target> is a STATIC library of the objects, with the headers' directories
# as PUBLIC include directories and attnc::attnrt as a PUBLIC dependency:
#
#   #include "a.h"
#   attnrt_open_embedded(attnc_a_manifest, attnc_a_symbol, 0, &module);
#
# where a_ is the file's stem with every character other than [A-Za-z0-9]
# replaced by '_'. The target's property ATTNC_ARTIFACT_DIRS lists the output
# directories.
include_guard(GLOBAL)

function(attnc_add_kernels target)
  set(fn "attnc_add_kernels(${target})")
  cmake_parse_arguments(PARSE_ARGV 1 ARG "" "" "SOURCES;TARGETS;OPTIONS")
  if(ARG_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "${fn}: unexpected arguments '${ARG_UNPARSED_ARGUMENTS}'"
      "; the signature is attnc_add_kernels(<target> SOURCES a.mlir ... "
      "[TARGETS host] [OPTIONS --option=value ...])")
  endif()
  if(NOT ARG_SOURCES)
    message(FATAL_ERROR "${fn}: no SOURCES; list the .mlir files to compile")
  endif()
  if(TARGET ${target})
    message(FATAL_ERROR "${fn}: a target named '${target}' already exists; "
      "attnc_add_kernels creates the library target, pick a new name")
  endif()
  if(NOT TARGET attnc::attnc)
    message(FATAL_ERROR "${fn}: the attnc compiler (attnc::attnc) is not "
      "defined: call find_package(attnc CONFIG REQUIRED COMPONENTS compiler) "
      "first, with an attnc installed with its compiler (not a runtime-only "
      "build, -DATTNC_BUILD_COMPILER=OFF)")
  endif()

  if(NOT ARG_TARGETS)
    set(ARG_TARGETS host)
  endif()
  foreach(t IN LISTS ARG_TARGETS)
    if(t MATCHES "^sm_[0-9]+[a-z]?$")
      message(FATAL_ERROR "${fn}: TARGETS ${t}: attnc_add_kernels links host "
        "kernels into a library; GPU kernels are PTX and cubins that attnrt "
        "loads at run time: write them with add_custom_command running "
        "attnc --target=sm_80,sm_90 -o DIR and open DIR with attnrt_gpu_open "
        "(docs/gpu.md); use TARGETS host here")
    elseif(NOT t STREQUAL "host")
      message(FATAL_ERROR "${fn}: TARGETS ${t} is not a target attnc knows; "
        "use TARGETS host")
    endif()
  endforeach()

  # The command line's packaging is fixed here; everything else passes.
  foreach(opt IN LISTS ARG_OPTIONS)
    if(opt MATCHES "^(-o|--?target|--?linkage|--?emit)(=.*)?$")
      message(FATAL_ERROR "${fn}: OPTIONS '${opt}': attnc_add_kernels sets "
        "-o, --target (from TARGETS), --linkage=object and the emitted level "
        "itself; remove it from OPTIONS")
    endif()
    if(NOT opt MATCHES "^-")
      message(FATAL_ERROR "${fn}: OPTIONS '${opt}' is not an attnc option; "
        "write options as --name=value (e.g. --block-kv=64); sources go "
        "after SOURCES")
    endif()
  endforeach()

  set(root ${CMAKE_CURRENT_BINARY_DIR}/attnc_kernels/${target})
  set(objects)
  set(headers)
  set(dirs)
  set(known)
  foreach(src IN LISTS ARG_SOURCES)
    get_filename_component(path ${src} ABSOLUTE
                           BASE_DIR ${CMAKE_CURRENT_SOURCE_DIR})
    if(NOT EXISTS ${path} OR IS_DIRECTORY ${path})
      message(FATAL_ERROR "${fn}: source '${src}' does not exist (looked for "
        "${path}); SOURCES are paths relative to ${CMAKE_CURRENT_SOURCE_DIR}")
    endif()
    # attnc names the files after the stem and the symbols after its C form.
    get_filename_component(stem ${path} NAME_WLE)
    string(REGEX REPLACE "[^A-Za-z0-9]" "_" id "${stem}")
    if(NOT id MATCHES "^[A-Za-z_]")
      message(FATAL_ERROR "${fn}: source '${src}': its stem '${stem}' must "
        "start with a letter or '_' (attnc names the symbols attnc_${id}_*); "
        "rename the file")
    endif()
    # Two artifacts with one id would both define attnc_<id>_manifest (and
    # one stem would share an output directory).
    foreach(entry IN LISTS known)
      string(REPLACE "=" ";" pair "${entry}")
      list(GET pair 0 otherId)
      list(GET pair 1 otherPath)
      if(otherId STREQUAL id)
        message(FATAL_ERROR "${fn}: source '${path}' and '${otherPath}' both "
          "give the symbol prefix attnc_${id}_ (from their file names); "
          "rename one of them")
      endif()
    endforeach()
    list(APPEND known "${id}=${path}")

    set(dir ${root}/${stem})
    set(object ${dir}/${stem}.o)
    set(header ${dir}/${stem}.h)
    file(RELATIVE_PATH shown ${CMAKE_BINARY_DIR} ${object})
    add_custom_command(
      OUTPUT ${object} ${header} ${dir}/manifest.json
      COMMAND attnc::attnc ${path} --target=host --linkage=object
              ${ARG_OPTIONS} -o ${dir}
      DEPENDS ${path} attnc::attnc
      COMMENT "attnc ${src} -> ${shown}"
      VERBATIM)
    list(APPEND objects ${object})
    list(APPEND headers ${header})
    list(APPEND dirs ${dir})
  endforeach()

  set_source_files_properties(${objects} PROPERTIES
    EXTERNAL_OBJECT TRUE GENERATED TRUE)
  set_source_files_properties(${headers} PROPERTIES
    HEADER_FILE_ONLY TRUE GENERATED TRUE)
  add_library(${target} STATIC ${objects} ${headers})
  set_target_properties(${target} PROPERTIES
    LINKER_LANGUAGE C
    ATTNC_ARTIFACT_DIRS "${dirs}")
  foreach(dir IN LISTS dirs)
    target_include_directories(${target} PUBLIC $<BUILD_INTERFACE:${dir}>)
  endforeach()
  # The kernels need libc and libm only; running them needs attnrt.
  target_link_libraries(${target} PUBLIC attnc::attnrt m)
endfunction()
