# Install rules and the CMake package (find_package(attnc CONFIG)): attnrt,
# its headers, the tools, attncConfig.cmake and attnc_add_kernels. See
# docs/cmake.md. Included last by the top-level CMakeLists.txt, so every
# target exists here.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(ATTNC_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/attnc)

if(TARGET attnc)
  # Installed binaries find libattnrt next to them and the LLVM/MLIR shared
  # libraries where this build found them (CMake drops the build RPATH on
  # install).
  foreach(tool attnc attn-opt attn-run)
    if(TARGET ${tool})
      set_target_properties(${tool} PROPERTIES INSTALL_RPATH
        "$ORIGIN/../${CMAKE_INSTALL_LIBDIR};${LLVM_LIBRARY_DIR}")
    endif()
  endforeach()
  # In the export set, so the package defines the imported executable
  # attnc::attnc.
  install(TARGETS attnc EXPORT attncTargets
    RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()

install(EXPORT attncTargets
  NAMESPACE attnc::
  FILE attncTargets.cmake
  DESTINATION ${ATTNC_INSTALL_CMAKEDIR})

configure_package_config_file(
  ${CMAKE_CURRENT_LIST_DIR}/attncConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/attncConfig.cmake
  INSTALL_DESTINATION ${ATTNC_INSTALL_CMAKEDIR})
# Pre-1.0: the manifest format and ABI may change between minor versions.
write_basic_package_version_file(
  ${CMAKE_CURRENT_BINARY_DIR}/attncConfigVersion.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMinorVersion)
install(FILES
  ${CMAKE_CURRENT_BINARY_DIR}/attncConfig.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/attncConfigVersion.cmake
  ${CMAKE_CURRENT_LIST_DIR}/AttncAddKernels.cmake
  DESTINATION ${ATTNC_INSTALL_CMAKEDIR})
