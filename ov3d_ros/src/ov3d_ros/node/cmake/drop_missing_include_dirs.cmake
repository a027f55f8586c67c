# Injected by ov3d_ros.node.build_interfaces (-DCMAKE_PROJECT_INCLUDE=this file) into any
# interface package it builds from the registry's ros-jazzy-* wheels.
#
# Targets those wheels export name include directories of the machine that built them
# (/opt/python/cp311-cp311/include/python3.11, numpy's include dir there). CMake refuses an
# imported target with a non-existent include directory when it generates the build, so at
# the end of the top-level CMakeLists (after every find_package) drop those directories.
# On a normal ROS install every directory exists and this changes nothing.
function(_rosidl_wheels_drop_missing_include_dirs)
  get_property(_targets DIRECTORY "${CMAKE_SOURCE_DIR}" PROPERTY IMPORTED_TARGETS)
  foreach(_target ${_targets})
    get_target_property(_dirs ${_target} INTERFACE_INCLUDE_DIRECTORIES)
    if(_dirs)
      set(_keep "")
      foreach(_dir ${_dirs})
        if(EXISTS "${_dir}" OR _dir MATCHES "^\\$<")
          list(APPEND _keep "${_dir}")
        endif()
      endforeach()
      set_target_properties(${_target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_keep}")
    endif()
  endforeach()
endfunction()

if(CMAKE_CURRENT_SOURCE_DIR STREQUAL CMAKE_SOURCE_DIR)
  cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _rosidl_wheels_drop_missing_include_dirs)
endif()
